//! Keys as a domain: the lifecycle ([`service::KeyService`]), the one validation of
//! what a door asks ([`input`]), and who may set what ([`policy`]). The CLI, the
//! management API and the portal are three doors onto it: they parse, call, render.

pub mod accounts;
pub mod audit;
pub mod import;
pub mod input;
pub mod limits_view;
pub mod policy;
pub mod rules;
pub mod service;
