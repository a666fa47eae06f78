//! The one integration-test binary: a module per topic.

mod approvers;
mod client;
mod client_v3;
mod compensation;
mod credentials;
mod exits;
mod integrity;
mod journal;
mod journal_backend;
mod language;
mod limits;
mod locks;
mod notify;
mod output_safety;
mod plan;
mod reconcile;
mod reconnect;
mod region;
mod report;
mod run;
mod runview;
mod sim;
mod sim_v3;
mod status;
mod validate;
mod windows;
