//! arp: to be written (see issue 2).
