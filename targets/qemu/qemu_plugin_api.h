/* The subset of qemu's plugin C API that edgec's plugins use (insn_count.c, insn_profile.c).
 *
 * qemu ships no plugin header in Debian, so these declarations are written out here; they match
 * qemu 4.2 and later (plugin API versions 0 to 4). The API version a plugin declares is
 * EDGEC_QEMU_PLUGIN_VERSION, set by edgec.targets.profile.build_plugin from `qemu-aarch64 --version`
 * (1 for qemu < 9, 2 after).
 */
#ifndef EDGEC_QEMU_PLUGIN_API_H
#define EDGEC_QEMU_PLUGIN_API_H

#include <stddef.h>
#include <stdint.h>

#ifndef EDGEC_QEMU_PLUGIN_VERSION
#define EDGEC_QEMU_PLUGIN_VERSION 1
#endif

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* opaque here: never read */
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

#define EXPORT __attribute__((visibility("default")))

#endif
