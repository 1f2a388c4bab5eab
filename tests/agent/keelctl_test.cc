// keelctl's argument parsing, size parsing and output formatting, without a keeld.
#include <string>
#include <vector>

#include "agent/keelctl_args.h"
#include "agent/keelctl_format.h"
#include "capnp/message.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace keel::keelctl {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<Command> Parse(std::vector<std::string> args, const char* env = nullptr) {
  return ParseCommand(args, env);
}

std::string Error(std::vector<std::string> args) {
  absl::StatusOr<Command> c = Parse(std::move(args));
  EXPECT_FALSE(c.ok());
  return std::string(c.status().message());
}

TEST(ParseSize, BinaryUnits) {
  EXPECT_EQ(*ParseSize("1G"), 1ull << 30);
  EXPECT_EQ(*ParseSize("512M"), 512ull << 20);
  EXPECT_EQ(*ParseSize("64k"), 64ull << 10);
  EXPECT_EQ(*ParseSize("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseSize("3MB"), 3ull << 20);
  EXPECT_EQ(*ParseSize("1T"), 1ull << 40);
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("4096B"), 4096u);
  EXPECT_EQ(*ParseSize("0"), 0u);
}

TEST(ParseSize, RejectsGarbage) {
  for (const char* bad : {"", "G", "-1G", "1.5G", "1X", "1 G B", "1iB", "99999999999999999999",
                          "16777216T", "0x10"}) {
    EXPECT_FALSE(ParseSize(bad).ok()) << bad;
  }
  EXPECT_THAT(std::string(ParseSize("1X").status().message()), HasSubstr("unknown unit"));
}

TEST(ParseDisk, VolumeAndPathForms) {
  DiskArg d = *ParseDiskArg("volume=data,ro,cache=none,serial=abc");
  EXPECT_EQ(d.volume, "data");
  EXPECT_TRUE(d.image_path.empty());
  EXPECT_TRUE(d.read_only);
  EXPECT_TRUE(d.cache_none);
  EXPECT_EQ(d.serial, "abc");

  DiskArg p = *ParseDiskArg("path=img/root.raw,cache=writeback");
  EXPECT_EQ(p.image_path, "img/root.raw");
  EXPECT_FALSE(p.read_only);
  EXPECT_FALSE(p.cache_none);
}

TEST(ParseDisk, RejectsAmbiguousOrUnknown) {
  EXPECT_FALSE(ParseDiskArg("volume=a,path=b").ok());
  EXPECT_FALSE(ParseDiskArg("ro").ok());
  EXPECT_FALSE(ParseDiskArg("volume=").ok());
  EXPECT_FALSE(ParseDiskArg("volume=a,cache=fast").ok());
  EXPECT_FALSE(ParseDiskArg("volume=a,ro=1").ok());
  EXPECT_THAT(std::string(ParseDiskArg("volume=a,bogus").status().message()), HasSubstr("bogus"));
}

TEST(ParseNic, NetworkMacMtu) {
  NicArg n = *ParseNicArg("network=lan,mac=52:54:00:00:00:01,mtu=9000");
  EXPECT_EQ(n.network, "lan");
  EXPECT_EQ(n.mac, "52:54:00:00:00:01");
  EXPECT_EQ(n.mtu, 9000u);
  EXPECT_FALSE(ParseNicArg("mac=52:54:00:00:00:01").ok());
  EXPECT_FALSE(ParseNicArg("network=lan,mtu=big").ok());
  EXPECT_FALSE(ParseNicArg("network=lan,speed=10").ok());
}

TEST(ParseCommand, VmCreateWithEverything) {
  Command c = *Parse({"--socket", "/tmp/k.sock", "vm", "create", "web-1", "--kernel=guest.elf",
                      "--initrd", "initrd.img", "--cmdline", "console=ttyS0 keeltest=idle",
                      "--memory-mib", "256", "--vcpus", "2", "--disk", "volume=root",
                      "--disk", "path=seed.raw,ro", "--nic", "network=lan", "--label", "app=web",
                      "--label", "tier=", "--request-id", "r-1", "--no-start", "--json"});
  EXPECT_EQ(c.verb, Verb::kVmCreate);
  EXPECT_EQ(c.socket, "/tmp/k.sock");
  EXPECT_TRUE(c.json);
  EXPECT_EQ(c.name, "web-1");
  EXPECT_EQ(c.create.kernel, "guest.elf");
  EXPECT_EQ(c.create.initrd, "initrd.img");
  EXPECT_EQ(c.create.cmdline, "console=ttyS0 keeltest=idle");
  EXPECT_EQ(c.create.memory_mib, 256u);
  EXPECT_EQ(c.create.vcpus, 2u);
  ASSERT_EQ(c.create.disks.size(), 2u);
  EXPECT_EQ(c.create.disks[0].volume, "root");
  EXPECT_TRUE(c.create.disks[1].read_only);
  ASSERT_EQ(c.create.nics.size(), 1u);
  EXPECT_EQ(c.create.nics[0].network, "lan");
  ASSERT_EQ(c.create.labels.size(), 2u);
  EXPECT_EQ(c.create.labels[1].key, "tier");
  EXPECT_EQ(c.create.labels[1].value, "");
  EXPECT_EQ(c.create.request_id, "r-1");
  EXPECT_TRUE(c.create.no_start);
}

TEST(ParseCommand, DefaultsAndSocketSources) {
  Command c = *Parse({"vm", "create", "a", "--kernel", "k"});
  EXPECT_EQ(c.socket, "/run/keel/keel.sock");
  EXPECT_EQ(c.create.memory_mib, 128u);
  EXPECT_EQ(c.create.vcpus, 1u);
  EXPECT_FALSE(c.create.no_start);
  EXPECT_FALSE(c.json);
  EXPECT_EQ(Parse({"host"}, "/env.sock")->socket, "/env.sock");
  EXPECT_EQ(Parse({"host", "--socket", "/flag.sock"}, "/env.sock")->socket, "/flag.sock");
  EXPECT_EQ(Parse({"host"}, "")->socket, "/run/keel/keel.sock");
}

TEST(ParseCommand, EveryVerb) {
  EXPECT_EQ(Parse({"host"})->verb, Verb::kHost);
  EXPECT_EQ(Parse({})->verb, Verb::kHelp);
  EXPECT_EQ(Parse({"vm", "list", "--help"})->verb, Verb::kHelp);
  EXPECT_EQ(Parse({"vm", "show", "x"})->verb, Verb::kVmShow);
  EXPECT_EQ(Parse({"vm", "stats", "x"})->verb, Verb::kVmStats);
  EXPECT_EQ(Parse({"vm", "start", "x"})->verb, Verb::kVmStart);
  EXPECT_EQ(Parse({"vm", "reboot", "x"})->verb, Verb::kVmReboot);
  EXPECT_EQ(Parse({"vm", "pause", "x"})->verb, Verb::kVmPause);
  EXPECT_EQ(Parse({"vm", "resume", "x"})->verb, Verb::kVmResume);
  EXPECT_EQ(Parse({"vm", "delete", "x"})->verb, Verb::kVmDelete);
  EXPECT_EQ(Parse({"net", "list"})->verb, Verb::kNetList);
  EXPECT_EQ(Parse({"net", "delete", "n"})->verb, Verb::kNetDelete);
  EXPECT_EQ(Parse({"volume", "list"})->verb, Verb::kVolumeList);
  EXPECT_EQ(Parse({"volume", "delete", "v"})->verb, Verb::kVolumeDelete);

  Command stop = *Parse({"vm", "stop", "x", "--hard", "--timeout-s", "5"});
  EXPECT_EQ(stop.verb, Verb::kVmStop);
  EXPECT_TRUE(stop.hard);
  EXPECT_EQ(stop.timeout_s, 5u);
  EXPECT_EQ(Parse({"vm", "stop", "x"})->timeout_s, 30u);

  Command list = *Parse({"vm", "list", "--state", "running,paused", "--name-contains", "web",
                         "--label", "a=b"});
  EXPECT_EQ(list.states, (std::vector<std::string>{"running", "paused"}));
  EXPECT_EQ(list.name_contains, "web");
  ASSERT_EQ(list.label_filter.size(), 1u);

  Command console = *Parse({"vm", "console", "x", "--follow", "--offset", "100"});
  EXPECT_TRUE(console.follow);
  EXPECT_EQ(console.offset, 100u);

  Command net = *Parse({"net", "create", "lan", "--bridge", "br9", "--mtu", "9000", "--address",
                        "10.9.0.1/24"});
  EXPECT_EQ(net.verb, Verb::kNetCreate);
  EXPECT_EQ(net.bridge, "br9");
  EXPECT_EQ(net.mtu, 9000u);
  EXPECT_EQ(net.address, "10.9.0.1/24");

  Command vol = *Parse({"volume", "create", "data", "--size", "1G"});
  EXPECT_EQ(vol.size_bytes, 1ull << 30);
  Command imp = *Parse({"volume", "import", "root", "--from", "img.raw"});
  EXPECT_EQ(imp.verb, Verb::kVolumeImport);
  EXPECT_EQ(imp.from, "img.raw");
  EXPECT_EQ(imp.size_bytes, 0u);

  Command ev = *Parse({"events", "--follow", "--after-seq", "7"});
  EXPECT_EQ(ev.verb, Verb::kEvents);
  EXPECT_TRUE(ev.follow);
  EXPECT_EQ(ev.after_seq, 7u);
}

TEST(ParseCommand, UsageErrorsSayWhatToFix) {
  EXPECT_THAT(Error({"vm", "create", "a"}), HasSubstr("--kernel PATH is required"));
  EXPECT_THAT(Error({"vm", "create", "--kernel", "k"}), HasSubstr("NAME is required"));
  EXPECT_THAT(Error({"vm", "show"}), HasSubstr("vm show: NAME is required"));
  EXPECT_THAT(Error({"vm", "show", "a", "b"}), HasSubstr("unexpected argument 'b'"));
  EXPECT_THAT(Error({"vm"}), HasSubstr("needs a subcommand"));
  EXPECT_THAT(Error({"vm", "explode", "a"}), HasSubstr("unknown command 'vm explode'"));
  EXPECT_THAT(Error({"frobnicate"}), HasSubstr("unknown command 'frobnicate'"));
  EXPECT_THAT(Error({"host", "--bogus"}), HasSubstr("unknown flag --bogus"));
  EXPECT_THAT(Error({"vm", "list", "--hard"}), HasSubstr("vm list does not take --hard"));
  EXPECT_THAT(Error({"vm", "create", "a", "--kernel"}), HasSubstr("--kernel needs a value"));
  EXPECT_THAT(Error({"vm", "create", "a", "--kernel", "k", "--memory-mib", "-5"}),
              HasSubstr("--memory-mib"));
  EXPECT_THAT(Error({"vm", "create", "a", "--kernel", "k", "--vcpus", "99999999999"}),
              HasSubstr("--vcpus"));
  EXPECT_THAT(Error({"vm", "list", "--state", "sleeping"}), HasSubstr("unknown state 'sleeping'"));
  EXPECT_THAT(Error({"volume", "create", "v"}), HasSubstr("--size SIZE is required"));
  EXPECT_THAT(Error({"volume", "create", "v", "--size", "lots"}), HasSubstr("--size"));
  EXPECT_THAT(Error({"volume", "import", "v"}), HasSubstr("--from PATH is required"));
  EXPECT_THAT(Error({"host", "--json=yes"}), HasSubstr("takes no value"));
  EXPECT_THAT(Error({"vm", "create", "a", "--kernel", "k", "--label", "novalue"}),
              HasSubstr("KEY=VALUE"));
}

TEST(Table, AlignsColumnsAndTrimsTrailingSpace) {
  Table t({"NAME", "STATE", "ID"});
  t.AddRow({"web-1", "running", "abc"});
  t.AddRow({"a", "stopped", ""});
  EXPECT_EQ(t.Render(),
            "NAME   STATE    ID\n"
            "web-1  running  abc\n"
            "a      stopped\n");
}

TEST(Format, HumanUnits) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(16ull << 20), "16 MiB");
  EXPECT_EQ(HumanBytes(1ull << 30), "1 GiB");
  EXPECT_EQ(HumanDuration(90'000'000), "0s");
  EXPECT_EQ(HumanDuration(5'200'000'000), "5s");
  EXPECT_EQ(HumanDuration(3723'000'000'000), "1h02m03s");
  EXPECT_EQ(FormatTime(0), "-");
  EXPECT_EQ(FormatTime(1'700'000'000'123'000'000), "2023-11-14T22:13:20.123Z");
}

TEST(Json, KeysAreCapnpFieldNames) {
  capnp::MallocMessageBuilder m;
  rpc::VmInfo::Builder vm = m.initRoot<rpc::VmInfo>();
  vm.setId("0f0e");
  vm.setName("web-1");
  vm.setState(rpc::VmState::RUNNING);
  vm.setPid(1234);
  vm.setConsoleBytes(1ull << 40);
  vm.setLastExitStatus(-1);
  rpc::VmSpec::Builder spec = vm.initSpec();
  spec.setName("web-1");
  auto disks = spec.initDisks(2);
  disks[0].setVolume("root");
  disks[1].setImagePath("seed \"1\".raw");
  disks[1].setReadOnly(true);
  disks[1].setCache(rpc::CacheMode::NONE);
  const std::string json = ToJsonOf(vm.asReader());
  EXPECT_THAT(json, HasSubstr("\"id\":\"0f0e\""));
  EXPECT_THAT(json, HasSubstr("\"state\":\"running\""));
  EXPECT_THAT(json, HasSubstr("\"pid\":1234"));
  EXPECT_THAT(json, HasSubstr("\"consoleBytes\":1099511627776"));
  EXPECT_THAT(json, HasSubstr("\"lastExitStatus\":-1"));
  EXPECT_THAT(json, HasSubstr("\"memoryMib\":128"));  // the schema default
  EXPECT_THAT(json, HasSubstr("\"autoStart\":true"));
  // Unions show only the member that is set.
  EXPECT_THAT(json, HasSubstr("{\"readOnly\":false,\"cache\":\"writeback\",\"serial\":\"\","
                              "\"volume\":\"root\"}"));
  EXPECT_THAT(json, HasSubstr("{\"readOnly\":true,\"cache\":\"none\",\"serial\":\"\","
                              "\"imagePath\":\"seed \\\"1\\\".raw\"}"));
  EXPECT_THAT(json, HasSubstr("\"nics\":[]"));
}

TEST(Json, StringsAreEscaped) {
  EXPECT_EQ(JsonString("a\"b\\c\nd\te"), "\"a\\\"b\\\\c\\nd\\te\"");
  EXPECT_EQ(JsonString(std::string("\x01\xff", 2)), "\"\\u0001\\u00ff\"");
}

TEST(Format, VmListAndDetails) {
  capnp::MallocMessageBuilder m;
  auto list = m.initRoot<rpc::HostAgent::ListVmsResults>().initVms(2);
  list[0].setName("web-1");
  list[0].setId("id-1");
  list[0].setState(rpc::VmState::RUNNING);
  list[0].setPid(42);
  list[0].setStartedTimeNs(1'000'000'000);
  list[0].initSpec().setMemoryMib(16);
  list[1].setName("db");
  list[1].setId("id-2");
  list[1].setState(rpc::VmState::STOPPED);
  list[1].initSpec();
  EXPECT_EQ(FormatVmList(list.asReader(), 66'000'000'000),
            "NAME   STATE    VCPUS  MEMORY   PID  UPTIME  ID\n"
            "web-1  running  1      16 MiB   42   1m05s   id-1\n"
            "db     stopped  1      128 MiB  -    -       id-2\n");

  auto nics = list[0].initNics(1);
  nics[0].setNetwork("lan");
  nics[0].setMac("52:54:00:00:00:01");
  nics[0].setTap("ktap0");
  nics[0].setMtu(1500);
  list[0].setLastExitStatus(-1);
  const std::string details = FormatVm(list.asReader()[0], 66'000'000'000);
  EXPECT_THAT(details, HasSubstr("name:       web-1\n"));
  EXPECT_THAT(details, HasSubstr("state:      running (desired: stopped)\n"));
  EXPECT_THAT(details, HasSubstr("last exit:  -\n"));
  EXPECT_THAT(details, HasSubstr("NIC  NETWORK  MAC                TAP    MTU\n"
                                 "0    lan      52:54:00:00:00:01  ktap0  1500\n"));
}

TEST(Format, EventLine) {
  capnp::MallocMessageBuilder m;
  auto e = m.initRoot<rpc::Event>();
  e.setSeq(12);
  e.setTimeNs(1'700'000'000'000'000'000);
  e.setType(rpc::EventType::CRASHED);
  e.setVmName("web-1");
  e.setState(rpc::VmState::CRASHED);
  e.setMessage("killed by SIGKILL");
  EXPECT_EQ(FormatEvent(e.asReader()),
            "12     2023-11-14T22:13:20.000Z  crashed  web-1                crashed   killed by "
            "SIGKILL\n");
  EXPECT_EQ(ToJsonOf(e.asReader()),
            "{\"seq\":12,\"timeNs\":1700000000000000000,\"type\":\"crashed\",\"vmId\":\"\","
            "\"vmName\":\"web-1\",\"state\":\"crashed\",\"message\":\"killed by SIGKILL\"}");
}

}  // namespace
}  // namespace keel::keelctl
