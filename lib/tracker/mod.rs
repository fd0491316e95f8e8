//! Trackers: the HTTP (BEP 3, 23, 7, 48) and UDP (BEP 15) protocols, the client side used by
//! bseed/bfetch and the server side used by btrack.
