/* insn_count: a qemu TCG plugin that counts the guest instructions a program executes.
 *
 *   qemu-aarch64 -plugin ./libinsn_count.so -d plugin -D count.txt PROGRAM ...
 *
 * At exit it writes one line, "insns: N", through qemu's plugin log (stderr, or the -D file).
 * Every translated block gets an execution callback adding its instruction count, so the number
 * is exact and deterministic for a deterministic program (it counts every thread; the sum is kept
 * with an atomic add). Built by edgec.targets.profile.build_plugin (tools/arm_bench.py uses it).
 *
 * qemu's plugin API declarations: qemu_plugin_api.h.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qemu_plugin_api.h"

EXPORT int qemu_plugin_version = EDGEC_QEMU_PLUGIN_VERSION;

static uint64_t insns;

static void on_exec(unsigned int vcpu_index, void *userdata) {
  (void)vcpu_index;
  __atomic_fetch_add(&insns, (uint64_t)(uintptr_t)userdata, __ATOMIC_RELAXED);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
}

static void on_exit(qemu_plugin_id_t id, void *userdata) {
  (void)id;
  (void)userdata;
  char line[64];
  snprintf(line, sizeof(line), "insns: %" PRIu64 "\n", __atomic_load_n(&insns, __ATOMIC_RELAXED));
  qemu_plugin_outs(line);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  (void)info;
  (void)argc;
  (void)argv;
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_exit, NULL);
  return 0;
}
