// virtio for the guest's CPL3 drivers: finding virtio-mmio devices, the version 2 MMIO
// transport (virtio 1.2 §4.2), and split virtqueues (§2.7).
//
// Discovery: `virtio_mmio.device=<size>@<base>:<irq>` tokens on the command line (the
// Linux syntax; keel-vmm and QEMU microvm with acpi=off write them), else the DSDT's
// LNRO0005 devices (Memory32Fixed + Interrupt resources; QEMU microvm with ACPI). Devices
// keep the order they are announced in: the Nth block device is the Nth one listed.
//
// Drivers poll by default: they never touch the interrupt controller and keep the device
// from interrupting (VIRTQ_AVAIL_F_NO_INTERRUPT, or a used_event kept far ahead with
// EVENT_IDX). In interrupt mode (virtio_use_irq) the device's GSI is routed through the
// IOAPIC and waits halt in sys_wait_irq until the interrupt, then read and acknowledge
// InterruptStatus before the driver reaps the used ring.
//
// Memory ordering: rings live in ordinary write-back RAM shared with the device. On x86
// stores are not reordered with stores nor loads with loads, so publishing (descriptors
// before avail->idx) and consuming (used->idx before the used element) need only compiler
// barriers; the one store-then-load that matters (avail->idx, then the device's
// notification suppression in used->flags / avail_event) needs a full fence (§2.7.13.3.1).
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot_info.h"
#include "irq.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2

// Device status bits (§2.1).
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

// Transport feature bits (§6).
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_BIT(b) (1ULL << (b))

// InterruptStatus bits (§4.2.2).
#define VIRTIO_INT_USED 1
#define VIRTIO_INT_CONFIG 2

#define VIRTIO_MAX_DEVICES 32

// One announced virtio-mmio window.
struct virtio_window {
  uint64_t base, size;
  uint32_t gsi;
  bool irq_active_low;
  const char* source;  // "cmdline" or "dsdt"
};

// Lists the windows the command line announces, else the DSDT's. Returns how many
// (0 with *err set when a token is malformed or there are no tables to fall back on).
int virtio_discover(const struct boot_info* boot, struct virtio_window* out, int max,
                    const char** err);

// What probing one window found (registers MagicValue, Version, DeviceID, VendorID).
struct virtio_probe {
  uint32_t magic, version, device_id, vendor_id;
};
void virtio_probe(uint64_t base, struct virtio_probe* out);

// A device being driven.
struct virtio_dev {
  struct virtio_window win;
  uint64_t base;
  uint32_t device_id;
  uint64_t device_features;  // offered
  uint64_t features;         // accepted (FEATURES_OK read back)
  // Interrupt mode (virtio_use_irq): routed, waits halt for `route.vector`.
  bool use_irq;
  struct gsi_route route;
  uint64_t irqs;  // device interrupts taken
};

// Finds the `index`th (0-based) device with `device_id`, printing one line per probed
// window ("keeltest: virtio <base> gsi=<n> id=<id> version=<v> from <source>"). Returns
// NULL, or why not (no such device, a legacy version 1 device, a bad magic).
const char* virtio_find(const struct boot_info* boot, uint32_t device_id, int index,
                        struct virtio_dev* dev, char* err, size_t err_len);

// Resets the device, sets ACKNOWLEDGE | DRIVER, reads its features, accepts
// VERSION_1 | (offered & wanted) in both 32-bit halves, sets FEATURES_OK and checks that
// it stuck. Returns NULL, or what failed (the device is then marked FAILED).
const char* virtio_negotiate(struct virtio_dev* dev, uint64_t wanted, char* err, size_t err_len);
// Sets DRIVER_OK once the queues are ready.
void virtio_driver_ok(struct virtio_dev* dev);
// Writes FAILED (after a driver-side error) / resets the device (before leaving).
void virtio_fail(struct virtio_dev* dev);
void virtio_reset(struct virtio_dev* dev);
uint32_t virtio_status(const struct virtio_dev* dev);

// Device configuration space (§4.2.2 offset 0x100+): accesses of the field's width; 64-bit
// fields as two 32-bit reads retried until ConfigGeneration is stable (§2.5.1).
uint8_t virtio_cfg8(const struct virtio_dev* dev, uint32_t off);
uint16_t virtio_cfg16(const struct virtio_dev* dev, uint32_t off);
uint32_t virtio_cfg32(const struct virtio_dev* dev, uint32_t off);
uint64_t virtio_cfg64(const struct virtio_dev* dev, uint32_t off);

// Routes the device's GSI (MADT IOAPICs; the default IOAPIC without ACPI) for interrupt
// mode. Returns NULL, or why it cannot.
const char* virtio_use_irq(struct virtio_dev* dev, const struct boot_info* boot, char* err,
                           size_t err_len);

// Interrupt mode: halts until the device's interrupt (or `deadline`, a TSC value; a
// periodic local APIC timer must be running for deadlines to be noticed), then reads and
// acknowledges InterruptStatus. Returns the status bits, 0 on timeout.
uint32_t virtio_wait_irq(struct virtio_dev* dev, uint64_t deadline);

// --- Split virtqueues (§2.7) ------------------------------------------------------------

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

struct virtq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
struct virtq_avail {
  uint16_t flags;
  uint16_t idx;
  uint16_t ring[];  // then used_event (EVENT_IDX)
};
struct virtq_used_elem {
  uint32_t id;
  uint32_t len;
};
struct virtq_used {
  uint16_t flags;
  uint16_t idx;
  struct virtq_used_elem ring[];  // then avail_event (EVENT_IDX)
};

// A buffer of a request: device-readable ones come first, then device-writable ones.
struct vq_buf {
  uint64_t addr;
  uint32_t len;
};

struct vq {
  struct virtio_dev* dev;
  uint16_t index, size, mask;
  struct virtq_desc* desc;
  volatile struct virtq_avail* avail;
  volatile struct virtq_used* used;
  volatile uint16_t* used_event;   // &avail->ring[size]
  volatile uint16_t* avail_event;  // &used->ring[size]
  bool event_idx;                  // VIRTIO_F_RING_EVENT_IDX negotiated
  bool irq_on;                     // the driver wants interrupts for this queue
  uint16_t free_head, num_free;
  uint16_t avail_shadow;  // next avail->idx
  uint16_t kicked;        // avail->idx at the last notification decision
  uint16_t last_used;
  uint32_t* token;  // per head: the caller's token
  uint16_t* chain;  // per head: descriptors the chain holds in the table (1 if indirect)
  bool* in_flight;  // per head
  // Indirect tables (VIRTIO_F_RING_INDIRECT_DESC): `ind_max` entries per head.
  struct virtq_desc* ind;
  uint16_t ind_max;
  uint64_t notifies;  // QueueNotify writes
  const char* error;  // set when the device returned something impossible
};

// Sets up queue `index` with a size of min(QueueNumMax, want) rounded down to a power of
// two, `ind_max` indirect entries per head when INDIRECT_DESC was negotiated (0: none),
// and marks it ready. Interrupts start suppressed. Returns NULL, or what failed.
const char* vq_init(struct vq* q, struct virtio_dev* dev, uint16_t index, uint16_t want,
                    uint16_t ind_max, char* err, size_t err_len);

// Adds a request of n_out device-readable then n_in device-writable buffers, as one
// indirect descriptor when `indirect` (and the queue has tables) or as a chain. Not
// visible to the device until vq_publish. Returns the head, or -1 when there is no room.
int vq_add(struct vq* q, const struct vq_buf* bufs, int n_out, int n_in, uint32_t token,
           bool indirect);
// Descriptors a request of n buffers needs from the ring.
static inline int vq_descs_needed(const struct vq* q, int n, bool indirect) {
  return indirect && q->ind && n > 1 && n <= q->ind_max ? 1 : n;
}

// Makes the added requests visible (avail->idx) and notifies the device unless it asked
// not to be (VIRTQ_USED_F_NO_NOTIFY, or avail_event with EVENT_IDX). One notification
// covers every request added since the last call.
void vq_kick(struct vq* q);

// True when the device has returned buffers not yet taken.
static inline bool vq_has_used(const struct vq* q) { return q->used->idx != q->last_used; }

// Takes one returned request: its token and the bytes the device wrote. False when none
// (or q->error was set: an id out of range or not in flight).
bool vq_get(struct vq* q, uint32_t* token, uint32_t* len);

// Asks for (or suppresses) interrupts on used buffers. Enabling is followed by a full
// fence, so a caller that checks vq_has_used afterwards cannot miss a completion.
void vq_set_interrupts(struct vq* q, bool on);

// Waits until the queue has used buffers: spinning when polling, halting for the device's
// interrupt in interrupt mode. False when `deadline` (a TSC value) passed first.
bool vq_wait(struct vq* q, uint64_t deadline);
