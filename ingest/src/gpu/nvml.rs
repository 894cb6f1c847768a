//! The NVML source: every local NVIDIA GPU through `nvml-wrapper`, which loads
//! `libnvidia-ml` at run time (so this builds, and fails cleanly, without a driver).

use super::{now_ns, GpuError, GpuProcess, GpuSample, GpuSource};
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::Nvml;
use std::collections::BTreeMap;

/// Samples local GPUs through NVML.
pub struct NvmlSource {
    nvml: Nvml,
    count: u32,
}

impl NvmlSource {
    /// Loads NVML and counts devices. Fails with the reason when the library or the
    /// driver is missing, or when there is no device.
    pub fn open() -> Result<Self, GpuError> {
        let nvml = Nvml::init().map_err(|e| GpuError::Nvml(e.to_string()))?;
        let count = nvml
            .device_count()
            .map_err(|e| GpuError::Nvml(e.to_string()))?;
        if count == 0 {
            return Err(GpuError::Nvml("0 devices".into()));
        }
        Ok(Self { nvml, count })
    }

    /// Device names, by index (for the start-up line).
    pub fn names(&self) -> Vec<String> {
        (0..self.count)
            .map(|i| {
                self.nvml
                    .device_by_index(i)
                    .and_then(|d| d.name())
                    .unwrap_or_else(|_| format!("GPU {i}"))
            })
            .collect()
    }
}

impl GpuSource for NvmlSource {
    fn sample(&mut self) -> Result<Vec<GpuSample>, GpuError> {
        let mut out = Vec::with_capacity(self.count as usize);
        for index in 0..self.count {
            let d = self
                .nvml
                .device_by_index(index)
                .map_err(|e| GpuError::Nvml(format!("device {index}: {e}")))?;
            let uuid = d
                .uuid()
                .map_err(|e| GpuError::Nvml(format!("device {index} uuid: {e}")))?;
            let mem = d.memory_info().ok();
            // Compute and graphics processes; a process in both is counted once.
            let mut procs: BTreeMap<u32, Option<u64>> = BTreeMap::new();
            for p in d
                .running_compute_processes()
                .unwrap_or_default()
                .into_iter()
                .chain(d.running_graphics_processes().unwrap_or_default())
            {
                let used = match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b),
                    UsedGpuMemory::Unavailable => None,
                };
                procs.entry(p.pid).or_insert(used);
            }
            out.push(GpuSample {
                time_ns: now_ns(),
                index,
                uuid,
                name: d.name().unwrap_or_default(),
                utilization_pct: d.utilization_rates().ok().map(|u| f64::from(u.gpu)),
                memory_used_bytes: mem.as_ref().map(|m| m.used),
                memory_total_bytes: mem.as_ref().map(|m| m.total),
                sm_clock_mhz: d.clock_info(Clock::SM).ok(),
                power_mw: d.power_usage().ok(),
                temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
                processes: procs
                    .into_iter()
                    .map(|(pid, used_memory_bytes)| GpuProcess {
                        pid,
                        used_memory_bytes,
                    })
                    .collect(),
            });
        }
        Ok(out)
    }
}
