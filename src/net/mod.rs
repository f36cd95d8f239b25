//! Connections: the runtime that owns backend connections, TLS to clients and to
//! backends, and what keygate wraps around each client connection (the head's
//! deadline and size, the cut switch, HTTP/2's stream budget).

pub mod backend_tls; // TLS to PostgreSQL and Redis: roots, libpq's sslmode checks
pub mod cut; // ending a client connection from outside the request that holds it
pub mod drain; // the open client connections, counted so a shutdown ends with the last
pub mod h2_streams; // requests in flight per HTTP/2 connection (rapid reset)
pub mod head_deadline; // the client connection wrapper: head deadline and size, the cut switch
pub mod io_runtime; // the runtime that owns PostgreSQL and Redis connections
pub mod tls; // TLS termination with a certificate swapped on reload
