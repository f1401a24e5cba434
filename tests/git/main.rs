//! Integration tests of the Git adapter against real Git: bare repositories over `file://`,
//! smart HTTP behind `git http-backend`, and SSH through a real `sshd`.

mod bad_input;
mod common;
mod concurrency;
mod controls;
mod file_remote;
mod http;
mod signatures;
mod ssh;
mod writer;
