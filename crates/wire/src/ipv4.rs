//! ipv4: to be written (see issue 2).
