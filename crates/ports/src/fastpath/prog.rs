//! The fast path's two eBPF programs, assembled here from instructions (they are a few
//! dozen, and building them at run time lets the map be an immediate, with no compiler
//! or object file involved). The ingress ifindex is read from the context
//! (`skb->ifindex`), so each program is loaded (and verified) once per flow table and
//! attached to every port, which keeps adding a port cheap:
//!
//! - `redirect`: tcx ingress on a port's netdev (a host-side veth, a NIC), and tcx egress
//!   on a TAP the switch reads itself (see [`super::FastPath::link_egress`]). Builds the
//!   flow key (this port's ifindex, destination MAC, source MAC, the VID of the frame's
//!   802.1Q tag or 0) from the frame, looks it up in the flow map and, on a hit, counts
//!   the frame, gives it the tag the flow leaves with (`bpf_skb_vlan_pop`/
//!   `bpf_skb_vlan_push`: popped, pushed or rewritten) and hands it on: with
//!   `bpf_redirect_peer` straight to the namespace behind an egress veth whose peer is in
//!   another namespace, with `bpf_redirect` out of any other egress netdev (a veth whose
//!   peer is here, a NIC, a TAP someone else holds), or with `bpf_redirect` and
//!   `BPF_F_INGRESS` into a TAP the switch reads itself (the bridge's host port, a VLAN
//!   gateway), as if the switch had written it; on a miss the frame goes on as before.
//!   Broadcasts (from a unicast source) are looked up in the flood map instead, by
//!   ingress ifindex and VID: on a hit the program sends a clone to every port of the
//!   entry (`bpf_clone_redirect`), untagged ports first and then, with the tag pushed or
//!   rewritten, tagged ones, and the frame itself to the last port (`bpf_redirect`); a
//!   port's ifindex with [`INGRESS_BIT`] set is received by that netdev rather than sent
//!   out of it.
//! - `hide`: a socket filter for the port's `AF_PACKET` socket, which sees frames before
//!   tcx does: it drops from the socket what the map says `redirect` will take, so the
//!   switch does not forward those a second time, and cuts what the flood map says
//!   `redirect` will flood down to its 14-byte Ethernet header, from which the switch
//!   learns and counts without sending anything.
//!
//! The kernel takes a frame's outer tag out into the context (`vlan_present`, `vlan_tci`,
//! `vlan_proto`) before taps and tcx see it. Both programs key a frame by that tag's VID
//! when it is an 802.1Q tag with a VID (1-4094), and leave to the switch every other
//! tagged frame: an 802.1ad outer tag, a priority tag (VID 0), and a frame with a tag
//! still in it (a second tag, or a TPID 0x8100, 0x88a8 or 0x9100 the kernel did not take
//! out). Frames longer than the switch takes go to it too, and so do frames longer than
//! the flow's limit (the egress port's MTU; GSO super-frames excepted, as the kernel
//! bridge does), which the switch then drops and counts.
//!
//! Key: `u32` ingress ifindex, 6 bytes destination, 6 bytes source, `u16` VID (0:
//! untagged), 2 bytes zero (20 bytes). Value: `u32` egress ifindex, `u32` longest frame,
//! `u64` packets, `u64` bytes, `u32` the VID of the tag the frames leave with (0:
//! untagged), `u32` how they leave (0: `bpf_redirect_peer`, 1: `bpf_redirect`, 2:
//! `bpf_redirect` with `BPF_F_INGRESS`, received by the netdev) (32 bytes).
//!
//! Flood key: `u32` ingress ifindex, `u32` VID (0: untagged) (8 bytes). Value (see
//! [`FLOOD`]): `u32` longest frame, `u32` the VID tagged copies leave with (0: none is
//! tagged, the last port included), `u32` untagged clones, `u32` tagged clones, `u32` the
//! last port's ifindex, 12 bytes zero, then [`MAX_CLONES`] `u32` ifindexes of untagged
//! clones and as many of tagged ones.
//!
//! The programs read frame bytes with loads whose byte order is the host's, and compare
//! them with constants written for a little-endian host: building for a big-endian one is
//! refused at compile time.

#[cfg(target_endian = "big")]
compile_error!("the fast path's eBPF programs assume a little-endian host");

/// Instruction classes, sizes, modes and operations of `linux/bpf_common.h` / `bpf.h`.
mod op {
    pub(super) const LD: u8 = 0x00;
    pub(super) const LDX: u8 = 0x01;
    pub(super) const STX: u8 = 0x03;
    pub(super) const JMP: u8 = 0x05;
    pub(super) const ALU64: u8 = 0x07;
    pub(super) const W: u8 = 0x00;
    pub(super) const H: u8 = 0x08;
    pub(super) const B: u8 = 0x10;
    pub(super) const DW: u8 = 0x18;
    pub(super) const IMM: u8 = 0x00;
    pub(super) const MEM: u8 = 0x60;
    pub(super) const ATOMIC: u8 = 0xc0;
    pub(super) const K: u8 = 0x00;
    pub(super) const X: u8 = 0x08;
    pub(super) const ADD: u8 = 0x00;
    pub(super) const MOV: u8 = 0xb0;
    pub(super) const AND: u8 = 0x50;
    pub(super) const OR: u8 = 0x40;
    pub(super) const RSH: u8 = 0x70;
    pub(super) const JEQ: u8 = 0x10;
    pub(super) const JGT: u8 = 0x20;
    pub(super) const JNE: u8 = 0x50;
    pub(super) const CALL: u8 = 0x80;
    pub(super) const EXIT: u8 = 0x90;
}
use op::*;

/// `BPF_PSEUDO_MAP_FD`: a 64-bit immediate load that names a map by descriptor.
const PSEUDO_MAP_FD: u8 = 1;
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_SKB_LOAD_BYTES: i32 = 26;
const HELPER_SKB_VLAN_PUSH: i32 = 18;
const HELPER_SKB_VLAN_POP: i32 = 19;
const HELPER_REDIRECT_PEER: i32 = 155;
const HELPER_REDIRECT: i32 = 23;
const HELPER_CLONE_REDIRECT: i32 = 13;
/// `struct __sk_buff` offsets.
const SKB_LEN: i16 = 0;
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_VLAN_TCI: i16 = 24;
const SKB_VLAN_PROTO: i16 = 28;
const SKB_IFINDEX: i16 = 40;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
const SKB_GSO_SIZE: i16 = 176;
/// `TCX_NEXT`: not ours, let the next program (or the stack) have it.
const TCX_NEXT: i32 = -1;
/// `TCX_DROP`: a frame whose tag could not be changed (no memory) is dropped.
const TCX_DROP: i32 = 2;
/// 0x8100 as the context's `vlan_proto` (big-endian bytes in a `u32`) reads, and as
/// `bpf_skb_vlan_push` takes it.
const PROTO_8021Q: i32 = 0x0081;
/// The tag protocol identifiers 0x8100, 0x88a8 and 0x9100 as a 16-bit load of their
/// big-endian bytes reads them (BPF is little-endian on the hosts we run on).
const TPIDS_LOADED: [i32; 3] = [0x0081, 0xa888, 0x0091];

pub(crate) const KEY_LEN: usize = 20;
pub(crate) const VALUE_LEN: usize = 32;
/// Where the key is built on the stack (`r10 + KEY_AT`).
const KEY_AT: i16 = -(KEY_LEN as i16);

/// Copies of a broadcast the kernel clones at most per tag (untagged, tagged), besides
/// the frame itself.
pub(crate) const MAX_CLONES: usize = 64;
pub(crate) const FLOOD_KEY_LEN: usize = 8;
/// Set in a flood value's ifindex: the netdev receives the copy (`BPF_F_INGRESS`) rather
/// than sending it out.
pub(crate) const INGRESS_BIT: u32 = 1 << 31;
pub(crate) const FLOOD_VALUE_LEN: usize = FLOOD::UNTAGGED + 8 * MAX_CLONES;
/// Offsets in a flood value.
#[allow(non_snake_case)]
pub(crate) mod FLOOD {
    pub(crate) const MAX_LEN: usize = 0;
    pub(crate) const VID: usize = 4;
    pub(crate) const N_UNTAGGED: usize = 8;
    pub(crate) const N_TAGGED: usize = 12;
    pub(crate) const LAST: usize = 16;
    pub(crate) const UNTAGGED: usize = 32;
    pub(crate) const TAGGED: usize = UNTAGGED + 4 * super::MAX_CLONES;
}
/// The frame's first 14 bytes in `hide`, below the key on the stack.
const HEAD: i16 = KEY_AT - 16;
/// Where the flood key is built on the stack, below those.
const FLOOD_KEY_AT: i16 = HEAD - 8;

/// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from((src << 4) | dst) << 8
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

fn mov_reg(dst: u8, src: u8) -> u64 {
    ins(ALU64 | MOV | X, dst, src, 0, 0)
}
fn mov_imm(dst: u8, imm: i32) -> u64 {
    ins(ALU64 | MOV | K, dst, 0, 0, imm)
}
fn add_imm(dst: u8, imm: i32) -> u64 {
    ins(ALU64 | ADD | K, dst, 0, 0, imm)
}
fn and_imm(dst: u8, imm: i32) -> u64 {
    ins(ALU64 | AND | K, dst, 0, 0, imm)
}
fn rsh_imm(dst: u8, imm: i32) -> u64 {
    ins(ALU64 | RSH | K, dst, 0, 0, imm)
}
fn or_reg(dst: u8, src: u8) -> u64 {
    ins(ALU64 | OR | X, dst, src, 0, 0)
}
fn ldx(size: u8, dst: u8, src: u8, off: i16) -> u64 {
    ins(LDX | MEM | size, dst, src, off, 0)
}
fn stx(size: u8, dst: u8, off: i16, src: u8) -> u64 {
    ins(STX | MEM | size, dst, src, off, 0)
}
fn atomic_add64(dst: u8, off: i16, src: u8) -> u64 {
    ins(STX | ATOMIC | DW, dst, src, off, ADD as i32)
}
fn jmp_reg(cond: u8, dst: u8, src: u8, off: i16) -> u64 {
    ins(JMP | cond | X, dst, src, off, 0)
}
fn jmp_imm(cond: u8, dst: u8, imm: i32, off: i16) -> u64 {
    ins(JMP | cond | K, dst, 0, off, imm)
}
fn call(helper: i32) -> u64 {
    ins(JMP | CALL, 0, 0, 0, helper)
}
fn exit() -> u64 {
    ins(JMP | EXIT, 0, 0, 0, 0)
}
fn ld_map(dst: u8, map_fd: i32) -> [u64; 2] {
    [ins(LD | DW | IMM, dst, PSEUDO_MAP_FD, 0, map_fd), 0]
}

/// Appends the flow lookup: the key (the device's ifindex from the context in `ctx`,
/// the frame's destination and source MACs read from `from + at`, and the VID in `vid`)
/// built in `r10 + KEY_AT .. r10` through `scratch`, and the map lookup, leaving the value
/// (or 0) in `r0`. Returns the index of the jump taken on a miss, to be patched.
fn lookup_flow(
    p: &mut Vec<u64>,
    ctx: u8,
    map_fd: i32,
    from: u8,
    at: i16,
    vid: u8,
    scratch: u8,
) -> usize {
    p.push(ldx(W, scratch, ctx, SKB_IFINDEX));
    p.push(stx(W, R10, KEY_AT, scratch));
    // 12 bytes of MACs as W, H, H, W: the key's u32 ifindex leaves them 4-aligned.
    for (size, off) in [(W, 0), (H, 4), (H, 6), (W, 8)] {
        p.push(ldx(size, scratch, from, at + off));
        p.push(stx(size, R10, KEY_AT + 4 + off, scratch));
    }
    // The VID and two zero bytes.
    p.push(stx(W, R10, KEY_AT + 16, vid));
    p.extend(ld_map(R1, map_fd));
    p.extend([
        mov_reg(R2, R10),
        add_imm(R2, i32::from(KEY_AT)),
        call(HELPER_MAP_LOOKUP_ELEM),
        jmp_imm(JEQ, R0, 0, 0),
    ]);
    p.len() - 1
}

/// Appends the checks that leave a frame to the switch: a tag still in the frame (a
/// TPID in `ethertype`, already loaded), one longer than `max_len`, the switch's limit
/// (GSO super-frames included: BIG TCP can make longer ones, which the switch drops),
/// and a tag the kernel took out that is not 802.1Q with a VID. Leaves the VID of that
/// tag (0 for none) in `vid`. Returns the indices of their jumps, to be patched to the
/// "not ours" exit.
fn leave_to_switch(
    p: &mut Vec<u64>,
    ctx: u8,
    ethertype: u8,
    vid: u8,
    scratch: u8,
    max_len: u32,
) -> Vec<usize> {
    let mut jumps = Vec::new();
    let mut jump = |p: &mut Vec<u64>, i: u64| {
        jumps.push(p.len());
        p.push(i);
    };
    for t in TPIDS_LOADED {
        jump(p, jmp_imm(JEQ, ethertype, t, 0));
    }
    p.push(ldx(W, scratch, ctx, SKB_LEN));
    jump(p, jmp_imm(JGT, scratch, max_len as i32, 0));
    p.push(mov_imm(vid, 0));
    p.push(ldx(W, scratch, ctx, SKB_VLAN_PRESENT));
    // Untagged: skip the tag's checks.
    p.push(jmp_imm(JEQ, scratch, 0, 5));
    p.push(ldx(W, scratch, ctx, SKB_VLAN_PROTO));
    jump(p, jmp_imm(JNE, scratch, PROTO_8021Q, 0));
    p.push(ldx(W, vid, ctx, SKB_VLAN_TCI));
    p.push(and_imm(vid, 0x0fff));
    jump(p, jmp_imm(JEQ, vid, 0, 0));
    jumps
}

/// Appends the flow's own length limit, after a hit (`r0` the value): a frame longer
/// than the value's limit, unless it is a GSO super-frame (`gso_size` set), goes to the
/// switch. Returns the index of the jump to patch to the "not ours" exit.
fn over_flow_limit(p: &mut Vec<u64>, ctx: u8, a: u8, b: u8) -> usize {
    p.extend([
        ldx(W, a, ctx, SKB_GSO_SIZE),
        jmp_imm(JNE, a, 0, 3),
        ldx(W, a, ctx, SKB_LEN),
        ldx(W, b, R0, 4),
        jmp_reg(JGT, a, b, 0),
    ]);
    p.len() - 1
}

/// Appends the broadcast test on the destination MAC at `from + at` (through `scratch`).
/// Returns the indices of the jumps taken when it is not ff:ff:ff:ff:ff:ff.
fn not_broadcast(p: &mut Vec<u64>, from: u8, at: i16, scratch: u8) -> Vec<usize> {
    let mut jumps = Vec::new();
    for off in [0, 2, 4] {
        p.push(ldx(H, scratch, from, at + off));
        jumps.push(p.len());
        p.push(jmp_imm(JNE, scratch, 0xffff, 0));
    }
    jumps
}

/// Appends the checks and lookup of a broadcast: its source (at `from + at`) must be a
/// station's (not a group address, not all zeros: the switch drops those), the flood
/// map must hold the ingress port (from `ctx`) and VID (in `vid`), and the frame must be
/// no GSO super-frame and no longer than the entry allows. Leaves the value in `r0`;
/// returns the indices of the jumps taken otherwise (to the switch).
fn lookup_flood(p: &mut Vec<u64>, ctx: u8, map_fd: i32, from: u8, at: i16, vid: u8) -> Vec<usize> {
    let mut jumps = Vec::new();
    p.extend([ldx(B, R1, from, at + 6), and_imm(R1, 1)]);
    jumps.push(p.len());
    p.extend([
        jmp_imm(JNE, R1, 0, 0),
        ldx(H, R1, from, at + 6),
        ldx(H, R3, from, at + 8),
        or_reg(R1, R3),
        ldx(H, R3, from, at + 10),
        or_reg(R1, R3),
    ]);
    jumps.push(p.len());
    p.push(jmp_imm(JEQ, R1, 0, 0));
    p.extend([
        ldx(W, R1, ctx, SKB_IFINDEX),
        stx(W, R10, FLOOD_KEY_AT, R1),
        stx(W, R10, FLOOD_KEY_AT + 4, vid),
    ]);
    p.extend(ld_map(R1, map_fd));
    p.extend([
        mov_reg(R2, R10),
        add_imm(R2, i32::from(FLOOD_KEY_AT)),
        call(HELPER_MAP_LOOKUP_ELEM),
    ]);
    jumps.push(p.len());
    p.extend([jmp_imm(JEQ, R0, 0, 0), ldx(W, R1, ctx, SKB_GSO_SIZE)]);
    jumps.push(p.len());
    p.extend([
        jmp_imm(JNE, R1, 0, 0),
        ldx(W, R1, ctx, SKB_LEN),
        ldx(W, R2, R0, FLOOD::MAX_LEN as i16),
    ]);
    jumps.push(p.len());
    p.push(jmp_reg(JGT, R1, R2, 0));
    jumps
}

/// Appends the split of a flood value's ifindex in `ifindex` into the ifindex and the
/// redirect flags in `flags` (`BPF_F_INGRESS` from [`INGRESS_BIT`]).
fn split_ingress(p: &mut Vec<u64>, ifindex: u8, flags: u8) {
    p.extend([
        mov_reg(flags, ifindex),
        rsh_imm(flags, 31),
        and_imm(ifindex, 0x7fff_ffff),
    ]);
}

/// Appends clones of the frame in `ctx` to the ifindexes listed at `value + list`, as
/// many as the `u32` at `value + count_at` says (loaded into `count`), unrolled up to
/// [`MAX_CLONES`]. Returns the indices of the jumps taken after the last clone, to be
/// patched to what comes next.
fn clones(
    p: &mut Vec<u64>,
    ctx: u8,
    value: u8,
    count: u8,
    count_at: usize,
    list: usize,
) -> Vec<usize> {
    p.push(ldx(W, count, value, count_at as i16));
    let mut done = Vec::new();
    for i in 0..MAX_CLONES {
        done.push(p.len());
        p.extend([
            jmp_imm(JEQ, count, i as i32, 0),
            mov_reg(R1, ctx),
            ldx(W, R2, value, (list + 4 * i) as i16),
        ]);
        split_ingress(p, R2, R3);
        p.push(call(HELPER_CLONE_REDIRECT));
    }
    done
}

/// Appends `bpf_skb_vlan_pop` of the frame in `ctx`; returns the index of the jump taken
/// when it fails, to be patched to the drop exit.
fn vlan_pop(p: &mut Vec<u64>, ctx: u8) -> usize {
    p.extend([
        mov_reg(R1, ctx),
        call(HELPER_SKB_VLAN_POP),
        jmp_imm(JNE, R0, 0, 0),
    ]);
    p.len() - 1
}

/// Appends the flood of a broadcast whose entry is in `r0` (see the module header).
/// Tagged copies keep the priority and DEI bits the frame came with. Returns the
/// indices of the jumps to patch to the drop exit (a tag that could not be changed).
fn flood(p: &mut Vec<u64>, ctx: u8) -> Vec<usize> {
    const VALUE: u8 = R8;
    const COUNT: u8 = R9;
    const PCP: u8 = R7;
    let at = |f: usize| f as i16;
    let mut to_drop = Vec::new();
    p.extend([
        mov_reg(VALUE, R0),
        // The arrival tag's priority and DEI bits (0 untagged), for the tagged copies.
        ldx(W, PCP, ctx, SKB_VLAN_PRESENT),
        jmp_imm(JEQ, PCP, 0, 2),
        ldx(W, PCP, ctx, SKB_VLAN_TCI),
        and_imm(PCP, 0xf000),
        // Untagged copies first: no clones and a tagged last copy (a VID: some copy is
        // tagged, the last one among them) skip this.
        ldx(W, R1, VALUE, at(FLOOD::N_UNTAGGED)),
        jmp_imm(JNE, R1, 0, 0),
    ]);
    let to_untag = p.len() - 1;
    p.extend([ldx(W, R1, VALUE, at(FLOOD::VID)), jmp_imm(JNE, R1, 0, 0)]);
    let skip_untag = p.len() - 1;
    let untag = p.len();
    p.extend([ldx(W, R1, ctx, SKB_VLAN_PRESENT), jmp_imm(JEQ, R1, 0, 0)]);
    let untagged_already = p.len() - 1;
    to_drop.push(vlan_pop(p, ctx));
    let clones_u = p.len();
    let after_u = clones(p, ctx, VALUE, COUNT, FLOOD::N_UNTAGGED, FLOOD::UNTAGGED);
    let tagged = p.len();
    p.extend([
        ldx(W, COUNT, VALUE, at(FLOOD::VID)),
        jmp_imm(JEQ, COUNT, 0, 0),
    ]);
    let untagged_last = p.len() - 1;
    p.extend([ldx(W, R1, ctx, SKB_VLAN_PRESENT), jmp_imm(JEQ, R1, 0, 0)]);
    let to_push = p.len() - 1;
    p.extend([
        ldx(W, R1, ctx, SKB_VLAN_TCI),
        and_imm(R1, 0x0fff),
        jmp_reg(JEQ, R1, COUNT, 0),
    ]);
    let same_tag = p.len() - 1;
    to_drop.push(vlan_pop(p, ctx));
    let push = p.len();
    p.extend([
        mov_reg(R1, ctx),
        mov_imm(R2, PROTO_8021Q),
        mov_reg(R3, COUNT),
        or_reg(R3, PCP),
        call(HELPER_SKB_VLAN_PUSH),
    ]);
    to_drop.push(p.len());
    p.push(jmp_imm(JNE, R0, 0, 0));
    let clones_t = p.len();
    let after_t = clones(p, ctx, VALUE, COUNT, FLOOD::N_TAGGED, FLOOD::TAGGED);
    let last = p.len();
    p.push(ldx(W, R1, VALUE, at(FLOOD::LAST)));
    split_ingress(p, R1, R2);
    p.extend([call(HELPER_REDIRECT), exit()]);
    patch(p, to_untag, untag);
    patch(p, skip_untag, tagged);
    patch(p, untagged_already, clones_u);
    for at in after_u {
        patch(p, at, tagged);
    }
    patch(p, untagged_last, last);
    patch(p, to_push, push);
    patch(p, same_tag, clones_t);
    for at in after_t {
        patch(p, at, last);
    }
    to_drop
}

#[cfg(test)]
fn is_cond_jump(i: u64) -> bool {
    (i & 0x07) as u8 == JMP && !matches!((i & 0xf0) as u8, CALL | EXIT)
}

/// The tcx program of the ports (at ingress of their netdevs, at egress of the TAPs the
/// switch reads).
pub(crate) fn redirect(map_fd: i32, flood_fd: i32, max_len: u32) -> Vec<u64> {
    let mut p = vec![
        mov_reg(R6, R1),
        ldx(W, R2, R6, SKB_DATA),
        ldx(W, R3, R6, SKB_DATA_END),
        mov_reg(R4, R2),
        add_imm(R4, 14),
        jmp_reg(JGT, R4, R3, 0), // -> next (patched below)
    ];
    let mut to_next = vec![p.len() - 1];
    p.push(ldx(H, R4, R2, 12));
    to_next.extend(leave_to_switch(&mut p, R6, R4, R7, R5, max_len));
    let unicast = not_broadcast(&mut p, R2, 0, R5);
    to_next.extend(lookup_flood(&mut p, R6, flood_fd, R2, 0, R7));
    let mut to_drop = flood(&mut p, R6);
    for at in unicast {
        let here = p.len();
        patch(&mut p, at, here);
    }
    let miss = lookup_flow(&mut p, R6, map_fd, R2, 0, R7, R5);
    to_next.push(over_flow_limit(&mut p, R6, R1, R2));
    p.extend([
        mov_imm(R1, 1),
        atomic_add64(R0, 8, R1),
        ldx(W, R1, R6, SKB_LEN),
        atomic_add64(R0, 16, R1),
        // Egress ifindex and outgoing VID, kept across the helpers below.
        ldx(W, R8, R0, 0),
        ldx(W, R9, R0, 24),
        // The same tag (or none) in and out: nothing to change.
        jmp_reg(JEQ, R7, R9, 0), // -> out (patched below)
    ]);
    let to_out = p.len() - 1;
    p.push(jmp_imm(JEQ, R7, 0, 0)); // untagged in: -> push
    let to_push = p.len() - 1;
    // From here on r7 holds how the frame leaves (read while r0 is still the value).
    p.extend([
        ldx(W, R7, R0, 28),
        mov_reg(R1, R6),
        call(HELPER_SKB_VLAN_POP),
        jmp_imm(JNE, R0, 0, 0),
    ]);
    to_drop.push(p.len() - 1);
    p.push(jmp_imm(JEQ, R9, 0, 0)); // popped, leaves untagged: -> send
    let popped = p.len() - 1;
    p.push(jmp_imm(JEQ, R0, 0, 0)); // r0 is 0 here: -> tag (skips the next load)
    let to_tag = p.len() - 1;
    let push = p.len();
    p.extend([ldx(W, R7, R0, 28)]);
    let tag = p.len();
    p.extend([
        mov_reg(R1, R6),
        mov_imm(R2, PROTO_8021Q),
        mov_reg(R3, R9),
        call(HELPER_SKB_VLAN_PUSH),
        jmp_imm(JNE, R0, 0, 0),
    ]);
    to_drop.push(p.len() - 1);
    p.push(jmp_imm(JEQ, R0, 0, 0)); // r0 is 0 here: -> send
    let pushed = p.len() - 1;
    let out = p.len();
    p.push(ldx(W, R7, R0, 28));
    let send = p.len();
    p.extend([
        mov_reg(R1, R8),
        mov_imm(R2, 0),
        jmp_imm(JNE, R7, 0, 2),
        call(HELPER_REDIRECT_PEER),
        exit(),
        // 2: received by the egress netdev.
        jmp_imm(JNE, R7, 2, 1),
        mov_imm(R2, 1),
        call(HELPER_REDIRECT),
        exit(),
    ]);
    let drop = p.len();
    p.extend([mov_imm(R0, TCX_DROP), exit()]);
    let next = p.len();
    p.extend([mov_imm(R0, TCX_NEXT), exit()]);
    patch(&mut p, to_push, push);
    patch(&mut p, to_out, out);
    patch(&mut p, to_tag, tag);
    for at in [popped, pushed] {
        patch(&mut p, at, send);
    }
    for at in to_drop {
        patch(&mut p, at, drop);
    }
    for at in to_next.into_iter().chain([miss]) {
        patch(&mut p, at, next);
    }
    p
}

/// The socket filter of the ports' `AF_PACKET` sockets (each bound to its netdev, whose
/// index the context carries).
pub(crate) fn hide(map_fd: i32, flood_fd: i32, max_len: u32) -> Vec<u64> {
    let mut p = vec![
        mov_reg(R6, R1),
        mov_imm(R2, 0),
        mov_reg(R3, R10),
        add_imm(R3, i32::from(HEAD)),
        mov_imm(R4, 14),
        call(HELPER_SKB_LOAD_BYTES),
        jmp_imm(JNE, R0, 0, 0), // -> keep (patched below)
    ];
    let mut to_keep = vec![p.len() - 1];
    p.push(ldx(H, R1, R10, HEAD + 12));
    to_keep.extend(leave_to_switch(&mut p, R6, R1, R7, R2, max_len));
    let unicast = not_broadcast(&mut p, R10, HEAD, R1);
    to_keep.extend(lookup_flood(&mut p, R6, flood_fd, R10, HEAD, R7));
    // Flooded by `redirect`: the switch gets the Ethernet header alone.
    p.extend([mov_imm(R0, 14), exit()]);
    for at in unicast {
        let here = p.len();
        patch(&mut p, at, here);
    }
    let miss = lookup_flow(&mut p, R6, map_fd, R10, HEAD, R7, R1);
    to_keep.push(over_flow_limit(&mut p, R6, R1, R2));
    p.extend([mov_imm(R0, 0), exit()]);
    let keep = p.len();
    p.extend([ldx(W, R0, R6, SKB_LEN), exit()]);
    for at in to_keep.into_iter().chain([miss]) {
        patch(&mut p, at, keep);
    }
    p
}

/// A tcx program that passes every frame on (`TCX_PASS`): a stand-in for someone
/// else's program on the same device, in tests.
#[cfg(test)]
pub(crate) fn pass_all() -> Vec<u64> {
    vec![mov_imm(R0, 0), exit()]
}

/// Points the jump at `at` to instruction `to`.
fn patch(p: &mut [u64], at: usize, to: usize) {
    let off = (to as i64 - at as i64 - 1) as i16;
    p[at] = (p[at] & !(0xffff << 16)) | u64::from(off as u16) << 16;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        // r6 = r1: BPF_ALU64|BPF_MOV|BPF_X = 0xbf, dst 6, src 1.
        assert_eq!(
            mov_reg(R6, R1).to_le_bytes(),
            [0xbf, 0x16, 0, 0, 0, 0, 0, 0]
        );
        // r5 = *(u32 *)(r6 + 40), the context's ifindex: 0x61, dst 5, src 6, off 40.
        assert_eq!(
            ldx(W, R5, R6, SKB_IFINDEX).to_le_bytes(),
            [0x61, 0x65, 40, 0, 0, 0, 0, 0]
        );
        // *(u32 *)(r10 - 16) = r5: 0x63, dst 10, src 5, off -16.
        assert_eq!(
            stx(W, R10, -16, R5).to_le_bytes(),
            [0x63, 0x5a, 0xf0, 0xff, 0, 0, 0, 0]
        );
        // lock *(u64 *)(r0 + 8) += r1: 0xdb, dst 0, src 1, off 8, imm BPF_ADD.
        assert_eq!(
            atomic_add64(R0, 8, R1).to_le_bytes(),
            [0xdb, 0x10, 8, 0, 0, 0, 0, 0]
        );
        // call 155; exit.
        assert_eq!(call(155).to_le_bytes(), [0x85, 0, 0, 0, 155, 0, 0, 0]);
        assert_eq!(exit().to_le_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        // r1 = map fd 5: 0x18 with src BPF_PSEUDO_MAP_FD, then an empty second half.
        assert_eq!(
            ld_map(R1, 5)[0].to_le_bytes(),
            [0x18, 0x11, 0, 0, 5, 0, 0, 0]
        );
    }

    /// Where each conditional jump of `p` lands.
    fn targets(p: &[u64]) -> Vec<(usize, usize)> {
        (0..p.len())
            .filter(|&i| is_cond_jump(p[i]))
            .map(|i| {
                (
                    i,
                    (i as i64 + 1 + i64::from((p[i] >> 16) as u16 as i16)) as usize,
                )
            })
            .collect()
    }

    /// The index of the first instruction equal to `i` at or after `from`.
    fn find(p: &[u64], from: usize, i: u64) -> usize {
        from + p[from..].iter().position(|&x| x == i).unwrap()
    }

    #[test]
    fn jumps_land_on_the_exit_paths() {
        let p = redirect(9, 10, 1518);
        let next = p.len() - 2;
        assert_eq!(p[next], mov_imm(R0, TCX_NEXT));
        let drop = p.len() - 4;
        assert_eq!(p[drop], mov_imm(R0, TCX_DROP));
        // The unicast part, after the flood's.
        let lookup = find(&p, 0, ldx(W, R5, R6, SKB_IFINDEX));
        let send = find(&p, lookup, call(HELPER_REDIRECT_PEER)) - 3;
        let out = send - 1;
        let tag = find(&p, lookup, call(HELPER_SKB_VLAN_PUSH)) - 3;
        let push = tag - 1;
        let broadcast = find(&p, 0, ldx(H, R5, R2, 0));
        let t = targets(&p);
        let count = |to: usize| t.iter().filter(|&&(_, x)| x == to).count();
        // Too short, three TPIDs, too long, not 802.1Q, VID 0, map miss, over the flow's
        // limit, and for broadcasts a group source, an all-zero one, a flood map miss,
        // GSO, over the flood's limit: to the switch. Same tag: out. Tag change failed
        // (one for flows, three for floods): dropped. Untagged in, tagged out: push. Popped and left
        // untagged, pushed: send. Popped, to be tagged again: tag. Untagged: past the
        // tag's checks, to the broadcast test. Not a broadcast (three halves of the
        // MAC): the flow lookup. GSO: past the limit. How it leaves: past
        // `bpf_redirect_peer`. And the flood's own (see below).
        assert_eq!(t.len(), 20 + 3 + 5 + 138);
        assert_eq!(count(next), 14);
        assert_eq!((count(out), count(drop), count(push)), (1, 5, 1));
        assert_eq!((count(send), count(tag)), (2, 1));
        assert_eq!(count(broadcast), 1, "untagged frames skip the tag's checks");
        assert_eq!(count(lookup), 3, "frames to other MACs skip the flood");
        assert_eq!(count(send + 5), 1, "bpf_redirect for other netdevs");
        assert_eq!(p[send + 5], jmp_imm(JNE, R7, 2, 1));
        assert_eq!(count(send + 7), 1, "without BPF_F_INGRESS but for 2");
        assert_eq!(p[send + 6], mov_imm(R2, 1));
        assert_eq!(p[send + 7], call(HELPER_REDIRECT));
        let gso = t
            .iter()
            .position(|&(i, _)| p[i] == ins(JMP | JNE | K, R1, 0, 3, 0));
        let (at, to) = t[gso.unwrap()];
        assert_eq!(to, at + 4, "GSO frames skip the limit");
        assert!(t.iter().all(|&(_, x)| x < p.len()));

        // The flood: each unrolled clone of the untagged ones may end the list and go on
        // to the tagged part (as may no untagged copies at all with a tagged last copy);
        // each tagged one, and an untagged last copy, to the last copy.
        let tagged = find(&p, broadcast, ldx(W, R9, R8, FLOOD::VID as i16));
        let last = find(&p, broadcast, ldx(W, R1, R8, FLOOD::LAST as i16));
        assert_eq!(count(tagged), MAX_CLONES + 1);
        assert_eq!(count(last), MAX_CLONES + 1);
        assert_eq!(p[last + 4], call(HELPER_REDIRECT));
        assert_eq!(p[last + 5], exit());
        let clones = p
            .iter()
            .filter(|&&i| i == call(HELPER_CLONE_REDIRECT))
            .count();
        assert_eq!(clones, 2 * MAX_CLONES);

        let h = hide(9, 10, 1518);
        let keep = h.len() - 2;
        assert_eq!(h[keep], ldx(W, R0, R6, SKB_LEN), "keeps the whole frame");
        let t = targets(&h);
        let count = |to: usize| t.iter().filter(|&&(_, x)| x == to).count();
        // Load failed, three TPIDs, too long, not 802.1Q, VID 0, map miss, limit, and for
        // broadcasts a group source, an all-zero one, a flood map miss, GSO and the
        // flood's limit; the untagged skip, GSO, and three "not a broadcast" to the flow
        // lookup.
        assert_eq!(t.len(), 11 + 3 + 5);
        assert_eq!(count(keep), 14);
        let flooded = find(&h, 0, mov_imm(R0, 14));
        assert_eq!(h[flooded + 1], exit(), "a flooded frame's header alone");
        assert_eq!(count(flooded + 2), 3);
        assert!(t.iter().all(|&(_, x)| x < h.len()));
    }
}
