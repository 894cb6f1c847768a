//! `tailscope gui`: the eframe window (glow, x11) around [`tailscope_ui::App`], the
//! worker thread that owns the store ([`worker`]) and its background analysis thread
//! ([`analysis`]), live access for other processes (`<store>.live`, also with
//! `--no-collector`), the optional collector (and GPU sampler) writing into the same
//! store, and `--screenshot DIR`, which renders every view in the real window and
//! saves one PNG per view.

pub mod analysis;
mod jobs;
mod query;
mod wake;
pub mod worker;

use crate::sink::WriterSink;
use anyhow::{Context, Result};
use clap::Args;
use eframe::egui;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tailscope_ingest::{Collector, CollectorConfig, IngestStats, Pipeline, Sink};
use tailscope_store::{Store, Writer, WriterConfig};
use tailscope_ui::{App, View};

#[derive(Args, Debug, Clone)]
pub struct GuiArgs {
    /// Do not run the OTLP collector (browse the store only).
    #[arg(long)]
    pub no_collector: bool,
    /// OTLP/gRPC listen address of the collector.
    #[arg(long, default_value_t = default_grpc())]
    pub grpc: SocketAddr,
    /// OTLP/HTTP listen address of the collector.
    #[arg(long, default_value_t = default_http())]
    pub http: SocketAddr,
    /// Render each view in the window, save one PNG per view into DIR, and exit.
    #[arg(long, value_name = "DIR")]
    pub screenshot: Option<PathBuf>,
}

fn default_grpc() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4317))
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4318))
}

impl GuiArgs {
    /// `tailscope` with no command: the window and the collector on the default ports.
    pub fn standard() -> Self {
        Self {
            no_collector: false,
            ..Self::demo()
        }
    }

    /// The window `tailscope demo` opens: no collector.
    pub fn demo() -> Self {
        Self {
            no_collector: true,
            grpc: default_grpc(),
            http: default_http(),
            screenshot: None,
        }
    }
}

/// What the GUI runs beside the window while it holds the store: the live-access
/// service (`<store>.live`, so `tailscope query|analyze|export|import` from another
/// terminal or a notebook reach the store through this process) and, unless
/// `--no-collector`, the collector and GPU sampler writing into it.
struct Live {
    /// The collector's counters and addresses, and the GPU sampler's status.
    collector: Option<(Arc<IngestStats>, String, String, Option<String>)>,
    sampler: Option<tailscope_ingest::gpu::SamplerHandle>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    writer: Arc<Writer>,
}

impl Live {
    fn start(db: &Path, store: &Store, args: &GuiArgs) -> Result<Live> {
        // the store's one writer, shared with the GUI's file import
        let writer = store.shared_writer(WriterConfig::default())?;
        let stats = Arc::new(IngestStats::default());
        let sink: Arc<dyn Sink> = Arc::new(WriterSink(Arc::clone(&writer)));
        let pipeline = Pipeline::new(Arc::clone(&sink), Arc::clone(&stats));
        let cfg = (!args.no_collector).then_some(CollectorConfig {
            grpc: Some(args.grpc),
            http: Some(args.http),
            allow_remote: false,
            ..CollectorConfig::default()
        });
        let collecting = cfg.is_some();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let reader = store.reader()?;
        let live_writer = Arc::clone(&writer);
        let db = db.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("tailscope-collector".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .thread_name("tailscope-io")
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("starting the async runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let collector = match cfg {
                        Some(cfg) => match Collector::start(&cfg, pipeline).await {
                            Ok(c) => Some(c),
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.to_string()));
                                return;
                            }
                        },
                        None => None,
                    };
                    let published =
                        match crate::live::service::publish(&db, reader, live_writer).await {
                            Ok(p) => Some(p),
                            Err(e) => {
                                tracing::warn!("no live access to the store: {e:#}");
                                None
                            }
                        };
                    let addrs = collector
                        .as_ref()
                        .map_or((None, None), |c| (c.grpc_addr, c.http_addr));
                    let _ = ready_tx.send(Ok(addrs));
                    let _ = stop_rx.await;
                    drop(published);
                    if let Some(c) = collector {
                        c.shutdown().await;
                    }
                });
            })
            .context("starting the collector thread")?;
        let (grpc, http) = ready_rx
            .recv()
            .context("the collector thread stopped")?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !collecting {
            return Ok(Live {
                collector: None,
                sampler: None,
                stop: Some(stop_tx),
                thread: Some(thread),
                writer,
            });
        }
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
        let sampler = tailscope_ingest::gpu::spawn_sampler(
            sink,
            tailscope_ingest::gpu::SamplerConfig {
                announce: false,
                ..tailscope_ingest::gpu::SamplerConfig::default()
            },
        );
        Ok(Live {
            collector: Some((
                stats,
                show(grpc),
                show(http),
                Some(sampler.status().to_owned()),
            )),
            sampler: Some(sampler),
            stop: Some(stop_tx),
            thread: Some(thread),
            writer,
        })
    }

    fn stop(mut self) {
        if let Some(s) = self.sampler.take() {
            let _ = s.stop();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(w) = Arc::try_unwrap(self.writer) {
            if let Err(e) = w.close() {
                eprintln!("error: closing the store writer: {e}");
            }
        } else {
            tracing::warn!("store writer still shared at exit");
        }
    }
}

/// Opens the window on the store at `db` (created if missing).
pub fn run(db: &Path, args: &GuiArgs) -> Result<()> {
    let store = Store::open(db).with_context(|| {
        format!(
            "opening store {} (is another tailscope serve or gui using it?)",
            db.display()
        )
    })?;
    let label = db.display().to_string();
    let mut startup_error = None;
    let live = if args.screenshot.is_some() {
        None
    } else {
        match Live::start(db, &store, args) {
            Ok(l) => Some(l),
            Err(e) if args.no_collector => {
                startup_error = Some(format!("no live access for other processes: {e:#}"));
                None
            }
            Err(e) => {
                startup_error = Some(format!("collector off: {e:#}"));
                None
            }
        }
    };
    show(&store, label, live, startup_error, args)
}

/// The window over a store pulled from a ClickHouse source (`--source`): no collector,
/// and no live access for other processes (the store is this process's memory).
pub fn run_source(store: &Store, label: String, args: &GuiArgs) -> Result<()> {
    let notice = format!("traces read from {label}; no collector in this window");
    show(store, label, None, Some(notice), args)
}

/// Runs the window and its worker over `store` until the window closes.
fn show(
    store: &Store,
    label: String,
    live: Option<Live>,
    startup_error: Option<String>,
    args: &GuiArgs,
) -> Result<()> {
    if let Some(dir) = &args.screenshot {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating screenshot folder {}", dir.display()))?;
    }
    let (ui_link, worker_link) = tailscope_ui::link(64);
    let reader = store.reader()?;
    let collector = live.as_ref().and_then(|l| l.collector.clone());
    let screenshot = args.screenshot.clone();
    let ctx_slot: Arc<std::sync::Mutex<Option<egui::Context>>> = Arc::default();
    let wake_slot = Arc::clone(&ctx_slot);
    let wake: worker::Wake = Arc::new(move || {
        if let Ok(g) = wake_slot.lock() {
            if let Some(c) = g.as_ref() {
                c.request_repaint();
            }
        }
    });
    let mut w = worker::Worker::new(reader, label.clone(), worker_link, wake);
    if let Some((stats, grpc, http, gpu)) = collector {
        w = w.with_collector(stats, grpc, http, gpu);
    }
    let worker = std::thread::Builder::new()
        .name("tailscope-worker".into())
        .spawn(move || w.run())
        .context("starting the worker thread")?;

    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("tailscope")
            .with_inner_size([1440.0, 900.0]),
        renderer: eframe::Renderer::Glow,
        ..eframe::NativeOptions::default()
    };
    let result = eframe::run_native(
        "tailscope",
        options,
        Box::new(move |cc| {
            if let Ok(mut g) = ctx_slot.lock() {
                *g = Some(cc.egui_ctx.clone());
            }
            let mut app = App::new(ui_link, label);
            if let Some(e) = startup_error {
                app.push_notice(e);
            }
            let window: Box<dyn eframe::App> = Box::new(Window {
                app,
                shots: screenshot.map(Screenshots::new),
            });
            Ok(window)
        }),
    );
    let _ = worker.join();
    if let Some(l) = live {
        l.stop();
    }
    if let Some(dir) = &args.screenshot {
        result.map_err(|e| {
            anyhow::anyhow!("the window failed: {e} (is a display available? run under xvfb-run)")
        })?;
        let missing: Vec<String> = View::ALL
            .iter()
            .map(|v| dir.join(format!("{}.png", v.slug())))
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "screenshots missing: {}",
            missing.join(", ")
        );
        return Ok(());
    }
    result.map_err(|e| {
        anyhow::anyhow!(
            "the window failed: {e} (is a display available? set DISPLAY, or run under xvfb-run)"
        )
    })
}

struct Window {
    app: App,
    shots: Option<Screenshots>,
}

impl eframe::App for Window {
    fn update(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.app.ui(ctx);
        if let Some(s) = &mut self.shots {
            if let Err(e) = s.step(&mut self.app, ctx) {
                eprintln!("error: {e:#}");
                s.failed = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
        }
    }
}

/// Drives `--screenshot`: each view is prepared, settles (no pending request for a few
/// frames), is captured with `ViewportCommand::Screenshot`, and saved as `<view>.png`.
struct Screenshots {
    dir: PathBuf,
    next: usize,
    prepared: bool,
    settled_frames: u32,
    requested: bool,
    started: Instant,
    failed: bool,
}

impl Screenshots {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            next: 0,
            prepared: false,
            settled_frames: 0,
            requested: false,
            started: Instant::now(),
            failed: false,
        }
    }

    fn prepare(app: &mut App, view: View) {
        match view {
            View::Trace => {
                let target = app.overview().and_then(|o| {
                    o.findings
                        .first()
                        .map(|f| (f.trace_id.clone(), Some(f.span_id.clone())))
                        .or_else(|| o.slowest_trace.clone().map(|t| (t, None)))
                });
                match target {
                    Some((t, s)) => app.open_trace(&t, s.as_deref()),
                    None => app.set_view(View::Trace),
                }
            }
            View::Conversation => {
                let conv = app.trace_detail().and_then(|d| d.conversation_id.clone());
                app.set_view(View::Conversation);
                if let Some(c) = conv {
                    app.open_conversation(&c);
                }
            }
            View::Replay => {
                // the form over the conversation with the most evicted turns
                let conv = app.conversations().and_then(|l| {
                    l.iter()
                        .max_by_key(|c| c.evictions)
                        .map(|c| c.conversation_id.clone())
                });
                app.set_view(View::Replay);
                if let Some(c) = conv {
                    app.open_replay_form(&c);
                }
            }
            View::Sql => {
                app.set_view(View::Sql);
                let sql = app.sql_text().to_owned();
                app.run_sql(&sql);
            }
            v => app.set_view(v),
        }
    }

    fn step(&mut self, app: &mut App, ctx: &egui::Context) -> Result<()> {
        let Some(&view) = View::ALL.get(self.next) else {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return Ok(());
        };
        ctx.request_repaint();
        if !self.prepared {
            // The overview must be loaded before the others pick their subjects.
            if view != View::Overview && app.overview().is_none() {
                return Ok(());
            }
            Self::prepare(app, view);
            self.prepared = true;
            self.settled_frames = 0;
            self.started = Instant::now();
            return Ok(());
        }
        let image = ctx.input(|i| {
            i.raw.events.iter().find_map(|e| match e {
                egui::Event::Screenshot { image, .. } => Some(Arc::clone(image)),
                _ => None,
            })
        });
        if let Some(img) = image {
            let path = self.dir.join(format!("{}.png", view.slug()));
            save_png(&path, &img)?;
            println!("saved {}", path.display());
            self.next += 1;
            self.prepared = false;
            self.requested = false;
            return Ok(());
        }
        if self.requested {
            if self.started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("no screenshot of the {} view arrived", view.title());
            }
            return Ok(());
        }
        let busy = app.pending() > 0 || app.job().is_some();
        if busy && self.started.elapsed() < Duration::from_secs(45) {
            self.settled_frames = 0;
            return Ok(());
        }
        self.settled_frames += 1;
        if self.settled_frames >= 6 {
            ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(egui::UserData::default()));
            self.requested = true;
        }
        Ok(())
    }
}

fn save_png(path: &Path, img: &egui::ColorImage) -> Result<()> {
    let [w, h] = img.size;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc
        .write_header()
        .with_context(|| format!("writing {}", path.display()))?;
    let bytes: Vec<u8> = img
        .pixels
        .iter()
        .flat_map(eframe::egui::Color32::to_array)
        .collect();
    writer
        .write_image_data(&bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
