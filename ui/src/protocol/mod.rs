//! The request/response protocol between the UI thread and the app's worker, and the
//! view-model types the views draw. Nothing here touches a database: the worker fills
//! these from the store, the UI only reads them.

mod channel;
mod conversation;
mod diff;
mod messages;
mod metrics;
mod overview;
mod replay;
mod sql;
mod trace;
mod traces;

pub use channel::{link, Link, WorkerLink};
pub use conversation::{Conversation, ConversationSummary, TurnVm};
pub use diff::{ChangeVm, DiffVm};
pub use messages::{CollectorStatus, JobProgress, Request, Response, ANALYSIS_JOB};
pub use metrics::{MetricsScope, MetricsWindow, SeriesVm};
pub use overview::{Cohort, FindingVm, FixFirstVm, Overview, SharedValueVm, SharedValues};
pub use replay::{
    ReplayEvictionVm, ReplayListItem, ReplayRequest, ReplaySide, ReplayTurnVm, ReplayVm,
};
pub use sql::SqlResult;
pub use trace::{
    EventVm, SectionInput, SectionVm, SpanChange, SpanInput, SpanVm, SpanWhatifVm, TraceDetail,
};
pub use traces::{SortColumn, TracePage, TraceQuery, TraceRowVm};
