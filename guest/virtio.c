// virtio-mmio discovery and transport, split virtqueues (see virtio.h). Register offsets
// and the initialisation order are virtio 1.2 §4.2.2 and §3.1.1.
#include "virtio.h"

#include "acpi.h"
#include "arch.h"
#include "cmdline.h"
#include "lib.h"
#include "mem.h"
#include "printf.h"
#include "timer.h"

#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_VENDOR_ID 0x00c
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DESC_HIGH 0x084
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG 0x100

#define VIRTIO_MMIO_MAGIC 0x74726976  // "virt"

// The LAPIC timer period that bounds each halt in interrupt mode (~10 ms at 1 GHz).
#define IRQ_MODE_TIMER_COUNT 10000000

static uint32_t rd(const struct virtio_dev* d, uint32_t off) { return mmio_read32(d->base + off); }
static void wr(const struct virtio_dev* d, uint32_t off, uint32_t v) {
  mmio_write32(d->base + off, v);
}

// --- Discovery --------------------------------------------------------------------------

static int from_cmdline(const char* cmdline, struct virtio_window* out, int max, const char** err) {
  const char* cur = cmdline;
  const char* v;
  size_t n;
  int count = 0;
  while ((v = cmdline_find_next(&cur, "virtio_mmio.device=", &n))) {
    struct virtio_window w = {.source = "cmdline"};
    if (!cmdline_parse_virtio_mmio(v, n, &w.size, &w.base, &w.gsi)) {
      *err = "a virtio_mmio.device= token is not <size>@<base>:<irq>";
      return 0;
    }
    if (count < max) out[count++] = w;
  }
  return count;
}

struct dsdt_scan {
  struct virtio_window* out;
  int max, count;
};

static void add_lnro(void* ctx, const struct aml_device* d) {
  struct dsdt_scan* s = ctx;
  struct aml_resources r;
  if (strcmp(d->hid, "LNRO0005") != 0 || !aml_device_resources(d->body, d->body_len, &r)) return;
  if (!r.has_mem || r.irq_count == 0 || s->count == s->max) return;
  s->out[s->count++] =
      (struct virtio_window){r.mem_base, r.mem_len, r.irqs[0], r.irq_active_low, "dsdt"};
}

int virtio_discover(const struct boot_info* boot, struct virtio_window* out, int max,
                    const char** err) {
  *err = NULL;
  int n = from_cmdline(boot->cmdline, out, max, err);
  if (n || *err) return n;
  static struct acpi_info a;
  char buf[160];
  const char* e = acpi_read(&a, boot->rsdp, buf, sizeof(buf));
  if (e && !a.dsdt_len) {
    *err = "no virtio_mmio.device= on the command line and no DSDT to look in";
    return 0;
  }
  struct dsdt_scan s = {out, max, 0};
  acpi_dsdt_devices(&a, add_lnro, &s);
  return s.count;
}

void virtio_probe(uint64_t base, struct virtio_probe* p) {
  p->magic = mmio_read32(base + REG_MAGIC);
  p->version = mmio_read32(base + REG_VERSION);
  p->device_id = mmio_read32(base + REG_DEVICE_ID);
  p->vendor_id = mmio_read32(base + REG_VENDOR_ID);
}

static bool window_mapped(const struct virtio_window* w) {
  return w->base >= 0xC0000000ULL && w->base < 0x100000000ULL && w->size >= REG_CONFIG &&
         w->size <= 0x100000000ULL - w->base;
}

const char* virtio_find(const struct boot_info* boot, uint32_t device_id, int index,
                        struct virtio_dev* dev, char* err, size_t n) {
  static struct virtio_window wins[VIRTIO_MAX_DEVICES];
  const char* e;
  int count = virtio_discover(boot, wins, VIRTIO_MAX_DEVICES, &e);
  if (e) return fmt_error(err, n, "%s", e);
  int seen = 0;
  for (int i = 0; i < count; i++) {
    const struct virtio_window* w = &wins[i];
    if (!window_mapped(w)) {
      KT_LINE("virtio 0x%lx size 0x%lx from %s: outside the uncached MMIO range, skipped", w->base,
              w->size, w->source);
      continue;
    }
    struct virtio_probe p;
    virtio_probe(w->base, &p);
    KT_LINE("virtio 0x%lx gsi=%u id=%u version=%u from %s", w->base, w->gsi, p.device_id, p.version,
            w->source);
    if (p.magic != VIRTIO_MMIO_MAGIC || p.device_id != device_id) continue;
    if (seen++ != index) continue;
    if (p.version == 1)
      return fmt_error(err, n,
                       "virtio-mmio device at 0x%lx is legacy (version 1); the guest drives "
                       "version 2 only (QEMU: -global virtio-mmio.force-legacy=false)",
                       w->base);
    if (p.version != 2)
      return fmt_error(err, n, "virtio-mmio device at 0x%lx has unknown version %u", w->base,
                       p.version);
    memset(dev, 0, sizeof(*dev));
    dev->win = *w;
    dev->base = w->base;
    dev->device_id = device_id;
    return NULL;
  }
  return fmt_error(err, n, "no virtio device with id %u number %d (found %d of %d windows)",
                   device_id, index, seen, count);
}

// --- Transport --------------------------------------------------------------------------

uint32_t virtio_status(const struct virtio_dev* d) { return rd(d, REG_STATUS); }

void virtio_reset(struct virtio_dev* d) {
  wr(d, REG_STATUS, 0);
  // §4.2.3.1: the device is reset when Status reads 0 again.
  for (int i = 0; i < 1000 && rd(d, REG_STATUS) != 0; i++) cpu_relax();
}

void virtio_fail(struct virtio_dev* d) {
  wr(d, REG_STATUS, rd(d, REG_STATUS) | VIRTIO_STATUS_FAILED);
}

const char* virtio_negotiate(struct virtio_dev* d, uint64_t wanted, char* err, size_t n) {
  virtio_reset(d);
  if (rd(d, REG_STATUS) != 0) return fmt_error(err, n, "device at 0x%lx did not reset", d->base);
  wr(d, REG_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
  wr(d, REG_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
  wr(d, REG_DEVICE_FEATURES_SEL, 0);
  uint64_t lo = rd(d, REG_DEVICE_FEATURES);
  wr(d, REG_DEVICE_FEATURES_SEL, 1);
  uint64_t hi = rd(d, REG_DEVICE_FEATURES);
  d->device_features = hi << 32 | lo;
  if (!(d->device_features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
    virtio_fail(d);
    return fmt_error(err, n, "device at 0x%lx does not offer VIRTIO_F_VERSION_1 (features 0x%lx)",
                     d->base, d->device_features);
  }
  uint64_t accept = VIRTIO_BIT(VIRTIO_F_VERSION_1) | (d->device_features & wanted);
  wr(d, REG_DRIVER_FEATURES_SEL, 0);
  wr(d, REG_DRIVER_FEATURES, (uint32_t)accept);
  wr(d, REG_DRIVER_FEATURES_SEL, 1);
  wr(d, REG_DRIVER_FEATURES, (uint32_t)(accept >> 32));
  uint32_t status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
  wr(d, REG_STATUS, status);
  uint32_t back = rd(d, REG_STATUS);
  if (!(back & VIRTIO_STATUS_FEATURES_OK)) {
    virtio_fail(d);
    return fmt_error(err, n, "device at 0x%lx refused features 0x%lx (status 0x%x)", d->base,
                     accept, back);
  }
  d->features = accept;
  return NULL;
}

void virtio_driver_ok(struct virtio_dev* d) {
  wr(d, REG_STATUS, rd(d, REG_STATUS) | VIRTIO_STATUS_DRIVER_OK);
}

uint8_t virtio_cfg8(const struct virtio_dev* d, uint32_t off) {
  return mmio_read8(d->base + REG_CONFIG + off);
}
uint16_t virtio_cfg16(const struct virtio_dev* d, uint32_t off) {
  return mmio_read16(d->base + REG_CONFIG + off);
}
uint32_t virtio_cfg32(const struct virtio_dev* d, uint32_t off) {
  return mmio_read32(d->base + REG_CONFIG + off);
}
uint64_t virtio_cfg64(const struct virtio_dev* d, uint32_t off) {
  uint32_t gen, lo, hi;
  int tries = 0;
  do {
    gen = rd(d, REG_CONFIG_GENERATION);
    lo = virtio_cfg32(d, off);
    hi = virtio_cfg32(d, off + 4);
  } while (rd(d, REG_CONFIG_GENERATION) != gen && ++tries < 100);
  return (uint64_t)hi << 32 | lo;
}

const char* virtio_use_irq(struct virtio_dev* d, const struct boot_info* boot, char* err,
                           size_t n) {
  static struct acpi_info a;
  char buf[160];
  const char* e = acpi_read(&a, boot->rsdp, buf, sizeof(buf));
  int ioapics = e && a.ioapic_count == 0 ? 0 : a.ioapic_count;  // none: the default IOAPIC
  if (!irq_find_gsi(a.ioapics, ioapics, d->win.gsi, &d->route))
    return fmt_error(err, n, "no IOAPIC serves the device's GSI %u", d->win.gsi);
  irq_route_gsi(&d->route, d->win.irq_active_low);
  irq_timer_start(IRQ_MODE_TIMER_COUNT);
  d->use_irq = true;
  KT_LINE("virtio 0x%lx irq gsi=%u ioapic=%u pin=%u vector=0x%x", d->base, d->win.gsi,
          d->route.ioapic_id, d->route.pin, d->route.vector);
  return NULL;
}

uint32_t virtio_wait_irq(struct virtio_dev* d, uint64_t deadline) {
  for (;;) {
    uint64_t seen = irq_count;
    if (irq_take(d->route.vector)) {
      uint32_t isr = rd(d, REG_INTERRUPT_STATUS);
      if (isr) {
        wr(d, REG_INTERRUPT_ACK, isr);
        d->irqs++;
        return isr;
      }
      continue;  // an edge whose cause was already acknowledged
    }
    if (deadline && tsc_passed(deadline)) return 0;
    sys_wait_irq(seen);
  }
}

// --- Split virtqueues -------------------------------------------------------------------

const char* vq_init(struct vq* q, struct virtio_dev* d, uint16_t index, uint16_t want,
                    uint16_t ind_max, char* err, size_t n) {
  memset(q, 0, sizeof(*q));
  wr(d, REG_QUEUE_SEL, index);
  if (rd(d, REG_QUEUE_READY) != 0)
    return fmt_error(err, n, "queue %u is already ready right after a reset", index);
  uint32_t max = rd(d, REG_QUEUE_NUM_MAX);
  if (max == 0) return fmt_error(err, n, "queue %u is not available (QueueNumMax 0)", index);
  uint32_t size = 1;
  while (size * 2 <= max && size * 2 <= want) size *= 2;
  q->dev = d;
  q->index = index;
  q->size = (uint16_t)size;
  q->mask = (uint16_t)(size - 1);
  q->event_idx = (d->features & VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX)) != 0;
  q->desc = mem_alloc(16 * size, 4096);
  q->avail = mem_alloc(6 + 2 * size, 4096);
  q->used = mem_alloc(6 + 8 * size, 4096);
  q->token = mem_alloc(4 * size, 8);
  q->chain = mem_alloc(2 * size, 8);
  q->in_flight = mem_alloc(size, 8);
  if (ind_max > 1 && (d->features & VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC))) {
    q->ind = mem_alloc((size_t)size * ind_max * sizeof(struct virtq_desc), 16);
    q->ind_max = ind_max;
  }
  if (!q->desc || !q->avail || !q->used || !q->token || !q->chain || !q->in_flight ||
      (ind_max > 1 && q->ind_max && !q->ind))
    return fmt_error(err, n, "out of memory for queue %u (size %u)", index, size);
  q->used_event = &q->avail->ring[size];
  q->avail_event = (volatile uint16_t*)&q->used->ring[size];
  for (uint32_t i = 0; i < size; i++) q->desc[i].next = (uint16_t)(i + 1);
  q->num_free = (uint16_t)size;
  vq_set_interrupts(q, false);

  wr(d, REG_QUEUE_NUM, size);
  uint64_t desc = mem_phys(q->desc), avail = mem_phys(q->avail), used = mem_phys(q->used);
  wr(d, REG_QUEUE_DESC_LOW, (uint32_t)desc);
  wr(d, REG_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
  wr(d, REG_QUEUE_DRIVER_LOW, (uint32_t)avail);
  wr(d, REG_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
  wr(d, REG_QUEUE_DEVICE_LOW, (uint32_t)used);
  wr(d, REG_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
  wr(d, REG_QUEUE_READY, 1);
  return NULL;
}

static void fill_desc(struct virtq_desc* t, const struct vq_buf* b, int i, int n, int n_out,
                      uint16_t next) {
  t->addr = b[i].addr;
  t->len = b[i].len;
  t->flags =
      (uint16_t)((i >= n_out ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
  t->next = next;
}

int vq_add(struct vq* q, const struct vq_buf* b, int n_out, int n_in, uint32_t token,
           bool indirect) {
  int n = n_out + n_in;
  int need = vq_descs_needed(q, n, indirect);
  if (n <= 0 || need > q->num_free) return -1;
  uint16_t head = q->free_head;
  if (need == 1 && n > 1) {
    struct virtq_desc* table = q->ind + (size_t)head * q->ind_max;
    for (int i = 0; i < n; i++) fill_desc(&table[i], b, i, n, n_out, (uint16_t)(i + 1));
    struct virtq_desc* h = &q->desc[head];
    q->free_head = h->next;
    h->addr = mem_phys(table);
    h->len = (uint32_t)(n * sizeof(struct virtq_desc));
    h->flags = VIRTQ_DESC_F_INDIRECT;
  } else {
    // The free list is linked through `next`, so a chain taken from its front is already
    // linked in order: only the fields and flags change.
    uint16_t d = head;
    for (int i = 0; i < n; i++) {
      struct virtq_desc* t = &q->desc[d];
      uint16_t following = t->next;
      fill_desc(t, b, i, n, n_out, following);
      d = following;
    }
    q->free_head = d;
  }
  q->num_free = (uint16_t)(q->num_free - need);
  q->token[head] = token;
  q->chain[head] = (uint16_t)need;
  q->in_flight[head] = true;
  q->avail->ring[q->avail_shadow & q->mask] = head;
  q->avail_shadow++;
  return head;
}

void vq_kick(struct vq* q) {
  uint16_t new_idx = q->avail_shadow, old_idx = q->kicked;
  if (new_idx == old_idx) return;
  barrier();  // descriptors and ring entries before the index (x86: stores stay in order)
  q->avail->idx = new_idx;
  mb_full();  // the index store before reading the device's suppression state
  q->kicked = new_idx;
  bool notify;
  if (q->event_idx) {
    // vring_need_event (§2.7.10): notify if avail_event lies in [old_idx, new_idx).
    notify = (uint16_t)(new_idx - *q->avail_event - 1) < (uint16_t)(new_idx - old_idx);
  } else {
    notify = !(q->used->flags & VIRTQ_USED_F_NO_NOTIFY);
  }
  if (notify) {
    wr(q->dev, REG_QUEUE_NOTIFY, q->index);
    q->notifies++;
  }
}

bool vq_get(struct vq* q, uint32_t* token, uint32_t* len) {
  uint16_t used_idx = q->used->idx;
  if (used_idx == q->last_used) return false;
  if ((uint16_t)(used_idx - q->last_used) > q->size) {
    q->error = "the used index moved further than the queue size";
    return false;
  }
  barrier();  // the index before the element (x86: loads stay in order)
  volatile struct virtq_used_elem* e = &q->used->ring[q->last_used & q->mask];
  uint32_t id = e->id;
  if (id >= q->size || !q->in_flight[id]) {
    q->error = "the device returned a descriptor id that is not in flight";
    return false;
  }
  *len = e->len;
  *token = q->token[id];
  q->in_flight[id] = false;
  // Return the chain to the free list: walk to its end through NEXT.
  uint16_t last = (uint16_t)id;
  for (int i = 1; i < q->chain[id]; i++) last = q->desc[last].next;
  q->desc[last].next = q->free_head;
  q->free_head = (uint16_t)id;
  q->num_free = (uint16_t)(q->num_free + q->chain[id]);
  q->last_used++;
  // Polling with EVENT_IDX: keep used_event far ahead so the device never interrupts.
  if (q->event_idx && !q->irq_on && (uint16_t)(*q->used_event - q->last_used) < 0x4000)
    *q->used_event = (uint16_t)(q->last_used + 0x7fff);
  return true;
}

void vq_set_interrupts(struct vq* q, bool on) {
  q->irq_on = on;
  if (q->event_idx) {
    // §2.7.10: the device interrupts once the used index passes used_event.
    *q->used_event = on ? q->last_used : (uint16_t)(q->last_used + 0x7fff);
  } else {
    q->avail->flags = on ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT;
  }
  mb_full();
}

bool vq_wait(struct vq* q, uint64_t deadline) {
  if (!q->dev->use_irq) {
    while (!vq_has_used(q)) {
      if (deadline && tsc_passed(deadline)) return false;
      cpu_relax();
    }
    return true;
  }
  vq_set_interrupts(q, true);
  for (;;) {
    if (vq_has_used(q)) return true;
    if (!virtio_wait_irq(q->dev, deadline) && deadline && tsc_passed(deadline))
      return vq_has_used(q);
  }
}
