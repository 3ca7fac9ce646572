// SPDX-License-Identifier: (MIT OR Apache-2.0) AND GPL-2.0-only
// What porthog's three BPF programs (porthog.bpf.c, porthog_signal.bpf.c,
// porthog_events.bpf.c) share: the kernel's integer types, spelled as linux/types.h does (no
// vmlinux.h and no kernel headers: the structures each program reads are declared in it with
// only the fields read, and relocated by CO-RE), then libbpf's helper and CO-RE read macros,
// which need those types. Each program's own constants follow its include of this file.
#ifndef PORTHOG_COMMON_H
#define PORTHOG_COMMON_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef int __s32;
typedef long long __s64;
typedef __u32 __wsum;
typedef __u64 __be64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 uid_t;
typedef _Bool bool;

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#endif
