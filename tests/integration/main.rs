//! The one integration test binary: real servers over real sockets.

#![allow(unreachable_pub, reason = "test helpers are shared between modules")]

mod clients;
mod common;
mod contract;
mod grpc;
mod rest;
