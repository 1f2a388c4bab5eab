// virtio-net: the pure transmit-chain check, and the device over a real tap in the private
// network namespace tests/net/net_test_main.cc puts the whole process in (skipped, 77,
// without root). The test plays the guest driver with VirtqDriver and the host side with an
// AF_PACKET socket bound to the tap.
#include "vmm/virtio/net.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/netlink.h"
#include "net/tap.h"
#include "tests/net/net_test_util.h"
#include "tests/vmm/virtio/virtq_driver.h"

namespace keel::vmm::virtio {
namespace {

using net::FeatureBit;
using net::VirtioNetHdr;
using testing::Buffer;
using testing::VirtqDriver;

constexpr uint64_t kCsum = FeatureBit(net::kVirtioNetFCsum);
constexpr uint64_t kHostTso4 = FeatureBit(net::kVirtioNetFHostTso4);

// --- ParseTxChain ---

struct TxCase {
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<bool> writable;
  std::vector<Segment> segs;
  Chain chain;

  explicit TxCase(std::vector<std::vector<uint8_t>> b, std::vector<bool> w = {})
      : bufs(std::move(b)), writable(std::move(w)) {
    for (size_t i = 0; i < bufs.size(); ++i) {
      const bool wr = i < writable.size() && writable[i];
      segs.push_back(Segment{bufs[i].data(), static_cast<uint32_t>(bufs[i].size()), wr});
      (wr ? chain.writable : chain.readable) += bufs[i].size();
    }
    chain.count = segs.size();
  }
  TxFrame Parse(uint64_t features = 0) {
    iov.assign(segs.size() + 1, iovec{});
    TxFrame f;
    ParseTxChain(chain, segs, features, net::kVnetHdrSize, iov, &f);
    return f;
  }
  std::vector<uint8_t> Joined(const TxFrame& f) const {
    std::vector<uint8_t> out;
    for (size_t i = 0; i < f.iov_count; ++i) {
      const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
      out.insert(out.end(), p, p + iov[i].iov_len);
    }
    return out;
  }
  std::vector<iovec> iov;
};

std::vector<uint8_t> Header(VirtioNetHdr h = {}) {
  std::vector<uint8_t> b(sizeof(h));
  memcpy(b.data(), &h, sizeof(h));
  return b;
}

std::vector<uint8_t> Bytes(size_t n, uint8_t first = 0) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(first + i);
  return b;
}

TEST(ParseTxChainTest, HeaderAndFrameInSeparateBuffers) {
  TxCase c({Header(), Bytes(60)});
  const TxFrame f = c.Parse();
  ASSERT_EQ(f.drop, TxDrop::kNone);
  EXPECT_EQ(f.frame_len, 60u);
  EXPECT_EQ(f.iov_count, 2u);
  EXPECT_EQ(c.iov[0].iov_base, &f.header);         // written from the checked copy
  EXPECT_EQ(c.iov[1].iov_base, c.bufs[1].data());  // the frame straight from guest memory
}

TEST(ParseTxChainTest, HeaderSplitAcrossBuffersAndSharingOne) {
  std::vector<uint8_t> all = Header();
  std::vector<uint8_t> frame = Bytes(100, 7);
  all.insert(all.end(), frame.begin(), frame.end());
  // 5 header bytes, then 7 header bytes + 20 frame bytes, then the rest.
  TxCase c({std::vector<uint8_t>(all.begin(), all.begin() + 5),
            std::vector<uint8_t>(all.begin() + 5, all.begin() + 32),
            std::vector<uint8_t>(all.begin() + 32, all.end())});
  const TxFrame f = c.Parse();
  ASSERT_EQ(f.drop, TxDrop::kNone);
  EXPECT_EQ(f.frame_len, 100u);
  std::vector<uint8_t> joined = c.Joined(f);
  EXPECT_EQ(joined, all);
}

TEST(ParseTxChainTest, ChecksumOffloadNeedsTheFeatureAndAnOffsetInsideTheFrame) {
  VirtioNetHdr h;
  h.flags = VirtioNetHdr::kFlagNeedsCsum;
  h.csum_start = 34;
  h.csum_offset = 6;
  TxCase ok({Header(h), Bytes(60)});
  EXPECT_EQ(ok.Parse(kCsum).drop, TxDrop::kNone);
  EXPECT_EQ(ok.Parse(0).drop, TxDrop::kBadOffload);
  h.csum_start = 58;
  TxCase outside({Header(h), Bytes(60)});
  EXPECT_EQ(outside.Parse(kCsum).drop, TxDrop::kBadOffload);
}

TEST(ParseTxChainTest, SegmentationOnlyWhenNegotiated) {
  VirtioNetHdr h;
  h.flags = VirtioNetHdr::kFlagNeedsCsum;
  h.csum_start = 34;
  h.csum_offset = 16;
  h.gso_type = VirtioNetHdr::kGsoTcpV4;
  h.gso_size = 1448;
  TxCase c({Header(h), Bytes(3000)});
  EXPECT_EQ(c.Parse(kCsum | kHostTso4).drop, TxDrop::kNone);
  EXPECT_EQ(c.Parse(kCsum).drop, TxDrop::kBadOffload);
  h.gso_type = VirtioNetHdr::kGsoUdp;  // never offered
  TxCase udp({Header(h), Bytes(3000)});
  EXPECT_EQ(udp.Parse(~uint64_t{0}).drop, TxDrop::kBadOffload);
  h.gso_type = VirtioNetHdr::kGsoTcpV4 | VirtioNetHdr::kGsoEcn;
  TxCase ecn({Header(h), Bytes(3000)});
  EXPECT_EQ(ecn.Parse(kCsum | kHostTso4).drop, TxDrop::kBadOffload);
}

TEST(ParseTxChainTest, ReceiveOnlyFlagsAreRefused) {
  VirtioNetHdr h;
  h.flags = VirtioNetHdr::kFlagDataValid;
  TxCase c({Header(h), Bytes(60)});
  EXPECT_EQ(c.Parse(~uint64_t{0}).drop, TxDrop::kBadOffload);
}

TEST(ParseTxChainTest, HostileChainsAreDropped) {
  EXPECT_EQ(TxCase({Bytes(11)}).Parse().drop, TxDrop::kShortHeader);
  EXPECT_EQ(TxCase({}).Parse().drop, TxDrop::kShortHeader);
  EXPECT_EQ(TxCase({Header(), Bytes(13)}).Parse().drop, TxDrop::kShortFrame);
  EXPECT_EQ(TxCase({Header(), Bytes(kNetMaxFrame + 1)}).Parse().drop, TxDrop::kOversize);
  EXPECT_EQ(TxCase({Header(), Bytes(kNetMaxFrame)}).Parse().drop, TxDrop::kNone);
  EXPECT_EQ(TxCase({Header(), Bytes(60)}, {false, true}).Parse().drop, TxDrop::kWritable);
  TxCase broken({Header(), Bytes(60)});
  broken.chain.error = ChainError::kOutOfBounds;
  EXPECT_EQ(broken.Parse().drop, TxDrop::kChain);
  TxCase loop({Header(), Bytes(60)});
  loop.chain.error = ChainError::kTooLong;
  EXPECT_EQ(loop.Parse().drop, TxDrop::kChain);
}

TEST(ParseTxChainTest, TooFewIovecsIsADropNotAnOverflow) {
  TxCase c({Header(), Bytes(30), Bytes(30)});
  std::vector<iovec> iov(2);
  TxFrame f;
  ParseTxChain(c.chain, c.segs, 0, net::kVnetHdrSize, iov, &f);
  EXPECT_EQ(f.drop, TxDrop::kChain);
}

// --- The device over a real tap ---

class CountingInterrupt : public keel::vmm::Interrupt {
 public:
  void Trigger() override { ++count; }
  int count = 0;
};

constexpr uint64_t kMemSize = 4 << 20;
constexpr uint64_t kRxRings = 0x10000;
constexpr uint64_t kTxRings = 0x20000;
constexpr uint64_t kRxBufs = 0x100000;
constexpr uint64_t kTxBufs = 0x200000;
constexpr uint16_t kQueueSize = 64;
const net::MacAddress kGuestMac{{0x02, 0x4b, 0x45, 0x45, 0x4c, 0x01}};
const net::MacAddress kPeerMac{{0x02, 0x4b, 0x45, 0x45, 0x4c, 0x02}};

class NetDeviceTest : public net::testing::NetTest {
 protected:
  void SetUp() override {
    NetTest::SetUp();
    // No IPv6 chatter (router solicitations, MLD) out of the tap: every frame read is ours.
    for (const char* path : {"/proc/sys/net/ipv6/conf/all/disable_ipv6",
                             "/proc/sys/net/ipv6/conf/default/disable_ipv6"}) {
      if (FILE* f = fopen(path, "w")) {
        fputs("1", f);
        fclose(f);
      }
    }
    auto mem = GuestMemory::CreateForTest({{0, kMemSize}});
    ASSERT_TRUE(mem.ok()) << mem.status();
    mem_.emplace(std::move(*mem));
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    auto tap = net::Tap::Create("ktnet0", {.vnet_hdr_size = net::kVnetHdrSize});
    ASSERT_TRUE(tap.ok()) << tap.status();
    ASSERT_TRUE(nl_->SetUp("ktnet0", true).ok());
    std::vector<ScopedFd> fds = tap->ReleaseFds();
    auto dev = NetDevice::Create(std::move(fds[0]), {.mac = kGuestMac, .queue_size = kQueueSize});
    ASSERT_TRUE(dev.ok()) << dev.status();
    dev_ = std::move(*dev);
    auto sock = net::testing::OpenPacketSocket("ktnet0");
    ASSERT_TRUE(sock.ok()) << sock.status();
    sock_ = std::move(*sock);
    rx_.emplace(*mem_, kRxRings, kQueueSize);
    tx_.emplace(*mem_, kTxRings, kQueueSize);
  }
  void TearDown() override {
    if (dev_ && dev_->active()) dev_->Reset();
    dev_.reset();
    NetTest::TearDown();
  }

  void Activate(uint64_t features, bool event_idx = false) {
    ASSERT_TRUE(rx_->Attach(queues_[0], event_idx).ok());
    ASSERT_TRUE(tx_->Attach(queues_[1], event_idx).ok());
    ActivateContext ctx;
    ctx.memory = &*mem_;
    ctx.features = features | kFeatureVersion1 | (event_idx ? kFeatureEventIdx : 0);
    ctx.queues = std::span(queues_);
    ctx.interrupt = &interrupt_;
    ctx.loop = loop_.get();
    ctx.needs_reset = [this](absl::string_view why) { needs_reset_.emplace(why); };
    ASSERT_TRUE(dev_->Activate(std::move(ctx)).ok());
    dev_->ProcessQueue(kNetRxQueue);
    dev_->ProcessQueue(kNetTxQueue);
  }

  // Posts receive buffers of `len` bytes at kRxBufs + i * 64 KiB... (slot `i`).
  void PostRx(uint32_t first, uint32_t count, uint32_t len) {
    for (uint32_t i = first; i < first + count; ++i) {
      rx_->Publish(rx_->AddChain({Buffer{kRxBufs + i * 0x4000ull, len, true}}));
    }
  }
  // Host side: a frame into the tap, toward the guest.
  void HostSends(const std::string& payload) {
    std::vector<uint8_t> f = net::testing::MakeFrame(kGuestMac, kPeerMac, payload);
    ASSERT_EQ(send(sock_.get(), f.data(), f.size(), 0), static_cast<ssize_t>(f.size()));
  }
  // Lets the event loop run whatever the tap made ready.
  void Pump() {
    for (int i = 0; i < 5; ++i) loop_->RunOnce(10);
  }
  std::string RxPayload(const testing::UsedElem& e, size_t len) {
    std::vector<uint8_t> b(len);
    EXPECT_TRUE(mem_->Read(kRxBufs + (e.id % kQueueSize) * 0x4000ull + 12 + 14, b).ok());
    return std::string(b.begin(), b.end());
  }
  VirtioNetHdr RxHeader(const testing::UsedElem& e) {
    VirtioNetHdr h;
    EXPECT_TRUE(
        mem_->Read(kRxBufs + e.id * 0x4000ull, std::span(reinterpret_cast<uint8_t*>(&h), sizeof(h)))
            .ok());
    return h;
  }

  std::optional<GuestMemory> mem_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<NetDevice> dev_;
  ScopedFd sock_;
  std::optional<VirtqDriver> rx_, tx_;
  std::vector<Queue> queues_{Queue(kQueueSize), Queue(kQueueSize)};
  CountingInterrupt line_;
  VirtioInterrupt interrupt_{&line_};
  std::optional<std::string> needs_reset_;
};

TEST_F(NetDeviceTest, ConfigSpaceHasMacAndLinkUp) {
  uint8_t cfg[8] = {};
  dev_->ReadConfig(0, cfg);
  EXPECT_EQ(0, memcmp(cfg, kGuestMac.bytes.data(), 6));
  EXPECT_EQ(cfg[6], 1);  // VIRTIO_NET_S_LINK_UP
  EXPECT_FALSE(dev_->device_features() & FeatureBit(net::kVirtioNetFMtu));
}

TEST_F(NetDeviceTest, ActivationSetsTheTapHeaderSizeAndOffloads) {
  Activate(kCsum | FeatureBit(net::kVirtioNetFGuestCsum) | FeatureBit(net::kVirtioNetFGuestTso4));
  auto state = net::QueryTap(dev_->tap_fd());
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->vnet_hdr_size, 12);
  auto tso = net::testing::EthtoolFlag("ktnet0", 0x0000001e /* ETHTOOL_GTSO */);
  ASSERT_TRUE(tso.ok()) << tso.status();
  EXPECT_TRUE(*tso);
}

TEST_F(NetDeviceTest, TransmitsFramesStraightFromGuestBuffersAndSkipsHostileOnes) {
  Activate(0);
  const std::vector<uint8_t> frame = net::testing::MakeFrame(kPeerMac, kGuestMac, "from guest");
  ASSERT_TRUE(mem_->Write(kTxBufs, Header()).ok());
  ASSERT_TRUE(mem_->Write(kTxBufs + 0x1000, frame).ok());
  // Good, then outside memory, then a too-short header, then good again.
  tx_->Publish(
      tx_->AddChain({{kTxBufs, 12}, {kTxBufs + 0x1000, static_cast<uint32_t>(frame.size())}}));
  tx_->Publish(tx_->AddChain({{kTxBufs, 12}, {kMemSize - 8, 64}}));
  tx_->Publish(tx_->AddChain({{kTxBufs, 6}}));
  tx_->Publish(
      tx_->AddChain({{kTxBufs, 12}, {kTxBufs + 0x1000, static_cast<uint32_t>(frame.size())}}));
  dev_->ProcessQueue(kNetTxQueue);
  for (int i = 0; i < 2; ++i) {
    auto got = net::testing::ReadTestFrame(sock_.get(), 0);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, frame);
  }
  int used = 0;
  while (auto e = tx_->PopUsed()) {
    EXPECT_EQ(e->len, 0u);  // transmit buffers are only read
    ++used;
  }
  EXPECT_EQ(used, 4);
  EXPECT_EQ(dev_->counters().tx_packets, 2u);
  EXPECT_EQ(dev_->counters().tx_dropped, 2u);
  EXPECT_EQ(line_.count, 1);  // one interrupt for the whole batch
  EXPECT_FALSE(needs_reset_.has_value());
}

TEST_F(NetDeviceTest, NoInterruptWhenTheDriverSuppressesIt) {
  Activate(0);
  tx_->SetAvailFlags(kAvailFlagNoInterrupt);
  ASSERT_TRUE(mem_->Write(kTxBufs, Header()).ok());
  tx_->Publish(tx_->AddChain({{kTxBufs, 12 + 60}}));
  dev_->ProcessQueue(kNetTxQueue);
  EXPECT_EQ(dev_->counters().tx_packets, 1u);
  EXPECT_EQ(line_.count, 0);
}

TEST_F(NetDeviceTest, CorruptAvailableRingNeedsReset) {
  Activate(0);
  tx_->SetAvailIdx(kQueueSize + 5);
  dev_->ProcessQueue(kNetTxQueue);
  ASSERT_TRUE(needs_reset_.has_value());
  EXPECT_THAT(*needs_reset_, ::testing::HasSubstr("transmit"));
  dev_->ProcessQueue(kNetRxQueue);  // ignored from now on
}

TEST_F(NetDeviceTest, ReceiveWaitsForBuffersInsteadOfDropping) {
  Activate(0);
  EXPECT_FALSE(dev_->rx_armed());  // no buffers: the tap is not even watched
  for (int i = 0; i < 3; ++i) HostSends("frame " + std::to_string(i));
  Pump();
  EXPECT_EQ(rx_->UsedIdx(), 0);
  EXPECT_EQ(dev_->counters().rx_packets, 0u);

  PostRx(0, 1, 2048);
  dev_->ProcessQueue(kNetRxQueue);  // the driver's kick
  Pump();
  EXPECT_EQ(dev_->counters().rx_packets, 1u);
  EXPECT_FALSE(dev_->rx_armed());  // ring empty again: back-pressure
  EXPECT_GE(dev_->counters().rx_stalls, 1u);

  PostRx(1, 4, 2048);
  dev_->ProcessQueue(kNetRxQueue);
  Pump();
  EXPECT_EQ(dev_->counters().rx_packets, 3u);
  EXPECT_TRUE(dev_->rx_armed());  // buffers left: waiting for the tap
  for (int i = 0; i < 3; ++i) {
    auto e = rx_->PopUsed();
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->len, 12u + 60u);
    EXPECT_EQ(RxPayload(*e, 7), "frame " + std::to_string(i));
    EXPECT_EQ(RxHeader(*e).num_buffers, 1);
  }
  EXPECT_EQ(dev_->counters().rx_dropped + dev_->counters().rx_truncated, 0u);
  EXPECT_GE(line_.count, 1);
}

TEST_F(NetDeviceTest, WithEventIdxADryRingAsksForAKickAtTheNextBuffer) {
  Activate(0, /*event_idx=*/true);
  EXPECT_EQ(rx_->AvailEvent(), 0);
  PostRx(0, 2, 2048);
  dev_->ProcessQueue(kNetRxQueue);
  HostSends("one");
  HostSends("two");
  Pump();
  EXPECT_EQ(dev_->counters().rx_packets, 2u);
  EXPECT_FALSE(dev_->rx_armed());
  EXPECT_EQ(rx_->AvailEvent(), 2);  // kick me when buffer #3 is posted
}

TEST_F(NetDeviceTest, MergeableBuffersSpreadOneFrameOverSeveralChains) {
  Activate(FeatureBit(net::kVirtioNetFMrgRxbuf));
  PostRx(0, 8, 512);  // 8 x 512 bytes: enough for one full-size frame
  dev_->ProcessQueue(kNetRxQueue);
  const std::string payload(1400, 'm');
  HostSends(payload);
  Pump();
  EXPECT_EQ(dev_->counters().rx_packets, 1u);
  std::vector<testing::UsedElem> used;
  while (auto e = rx_->PopUsed()) used.push_back(*e);
  ASSERT_EQ(used.size(), 3u);  // 12 + 1414 bytes in 512-byte buffers
  EXPECT_EQ(RxHeader(used[0]).num_buffers, 3);
  EXPECT_EQ(used[0].len, 512u);
  EXPECT_EQ(used[1].len, 512u);
  EXPECT_EQ(used[2].len, 12u + 14u + 1400u - 1024u);
  // The chains the frame did not need are kept for the next one.
  HostSends("second");
  Pump();
  auto e = rx_->PopUsed();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->id, 3u);
  EXPECT_EQ(RxHeader(*e).num_buffers, 1);
}

TEST_F(NetDeviceTest, UnusableReceiveChainsAreReturnedEmpty) {
  Activate(0);
  rx_->Publish(rx_->AddChain({{kRxBufs, 2048, false}}));        // device-readable
  rx_->Publish(rx_->AddChain({{kRxBufs, 8, true}}));            // smaller than a header
  rx_->Publish(rx_->AddChain({{kMemSize - 100, 2048, true}}));  // outside memory
  PostRx(3, 1, 2048);
  dev_->ProcessQueue(kNetRxQueue);
  HostSends("ok");
  Pump();
  EXPECT_EQ(dev_->counters().rx_bad_chains, 3u);
  EXPECT_EQ(dev_->counters().rx_packets, 1u);
  std::vector<testing::UsedElem> used;
  while (auto e = rx_->PopUsed()) used.push_back(*e);
  ASSERT_EQ(used.size(), 4u);
  EXPECT_EQ(used[0].len, 0u);
  EXPECT_EQ(used[3].len, 72u);
  EXPECT_FALSE(needs_reset_.has_value());
}

TEST_F(NetDeviceTest, FrameLargerThanTheBuffersIsDroppedAndTheBuffersReused) {
  Activate(0);
  PostRx(0, 1, 512);  // too small for a 1400-byte frame (a driver bug without MRG_RXBUF)
  dev_->ProcessQueue(kNetRxQueue);
  HostSends(std::string(1400, 'x'));
  HostSends("small");
  Pump();
  EXPECT_EQ(dev_->counters().rx_truncated, 1u);
  EXPECT_EQ(dev_->counters().rx_packets, 1u);
  auto e = rx_->PopUsed();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->len, 72u);
  EXPECT_EQ(RxPayload(*e, 5), "small");
}

TEST_F(NetDeviceTest, TapDeletedUnderTheDeviceStopsItWithoutSpinning) {
  Activate(0);
  PostRx(0, 4, 2048);
  dev_->ProcessQueue(kNetRxQueue);
  ASSERT_TRUE(nl_->DeleteLink("ktnet0").ok());
  Pump();  // returns: the fd is no longer watched
  EXPECT_FALSE(dev_->rx_armed());
  ASSERT_TRUE(mem_->Write(kTxBufs, Header()).ok());
  tx_->Publish(tx_->AddChain({{kTxBufs, 12 + 60}}));
  dev_->ProcessQueue(kNetTxQueue);
  EXPECT_EQ(dev_->counters().tx_dropped, 1u);
  ASSERT_TRUE(tx_->PopUsed().has_value());
  EXPECT_FALSE(needs_reset_.has_value());
}

TEST_F(NetDeviceTest, ResetStopsWatchingTheTap) {
  Activate(0, /*event_idx=*/true);
  PostRx(0, 2, 2048);
  dev_->ProcessQueue(kNetRxQueue);
  EXPECT_TRUE(dev_->rx_armed());
  dev_->Reset();
  EXPECT_FALSE(dev_->rx_armed());
  HostSends("after reset");
  Pump();  // nothing may touch the (former) rings
  EXPECT_EQ(rx_->UsedIdx(), 0);
}

}  // namespace
}  // namespace keel::vmm::virtio
