/* insn_profile: a qemu TCG plugin that counts the guest instructions executed per translated
 * block, for attributing a program's instructions to functions (`edgec profile` on ARM artifacts,
 * edgec.targets.profile; tools/arm_profile.py).
 *
 *   qemu-aarch64 -plugin ./libinsn_profile.so,out=PROFILE.txt PROGRAM ...
 *
 * At exit it writes one line per translated-block start address that ran, "ADDRESS INSNS"
 * (hex guest virtual address, decimal instructions executed in blocks starting there), to the
 * file named by the `out` argument (stdout when absent), and the total "insns: N" through qemu's
 * plugin log like insn_count.c. A block translated twice at the same address (after a flush)
 * adds to the same entry. Built by edgec.targets.profile.build_plugin.
 *
 * qemu's plugin API declarations: qemu_plugin_api.h.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_api.h"

EXPORT int qemu_plugin_version = EDGEC_QEMU_PLUGIN_VERSION;

/* Open-addressing hash table keyed by block address; an entry is shared by every translation of
 * that address, and its pointer is the exec callback's userdata (the table never moves). */
struct entry {
  uint64_t vaddr;
  uint64_t n_insns;
  uint64_t insns;
  int used;
};

#define TABLE_BITS 22
#define TABLE_SIZE (1u << TABLE_BITS)
static struct entry *table;
static char out_path[4096];

static struct entry *lookup(uint64_t vaddr, uint64_t n_insns) {
  uint64_t h = (vaddr * 0x9E3779B97F4A7C15ull) >> (64 - TABLE_BITS);
  for (;;) {
    struct entry *e = &table[h];
    if (!e->used) {
      e->used = 1;
      e->vaddr = vaddr;
      e->n_insns = n_insns;
      return e;
    }
    if (e->vaddr == vaddr && e->n_insns == n_insns) return e;
    h = (h + 1) & (TABLE_SIZE - 1);
  }
}

static void on_exec(unsigned int vcpu_index, void *userdata) {
  (void)vcpu_index;
  struct entry *e = userdata;
  __atomic_fetch_add(&e->insns, e->n_insns, __ATOMIC_RELAXED);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  struct entry *e = lookup(qemu_plugin_tb_vaddr(tb), qemu_plugin_tb_n_insns(tb));
  qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, e);
}

static void at_exit(qemu_plugin_id_t id, void *userdata) {
  (void)id;
  (void)userdata;
  FILE *f = out_path[0] ? fopen(out_path, "w") : stdout;
  uint64_t total = 0;
  for (uint32_t i = 0; i < TABLE_SIZE; i++) {
    if (table[i].used && table[i].insns) {
      fprintf(f ? f : stdout, "%" PRIx64 " %" PRIu64 "\n", table[i].vaddr, table[i].insns);
      total += table[i].insns;
    }
  }
  if (f && f != stdout) fclose(f);
  char line[64];
  snprintf(line, sizeof(line), "insns: %" PRIu64 "\n", total);
  qemu_plugin_outs(line);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  (void)info;
  for (int i = 0; i < argc; i++) {
    if (strncmp(argv[i], "out=", 4) == 0) {
      strncpy(out_path, argv[i] + 4, sizeof(out_path) - 1);
    }
  }
  table = calloc(TABLE_SIZE, sizeof(struct entry));
  if (!table) return -1;
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, at_exit, NULL);
  return 0;
}
