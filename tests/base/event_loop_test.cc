#include "base/event_loop.h"

#include <thread>

#include "base/eventfd.h"
#include "gtest/gtest.h"

namespace keel {
namespace {

TEST(EventLoopTest, RunsHandlerWhenFdIsReady) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  auto efd = EventFd::Create();
  ASSERT_TRUE(efd.ok());
  uint64_t seen = 0;
  ASSERT_TRUE((*loop)->Add(efd->fd(), EPOLLIN, [&](uint32_t) { seen += efd->Consume(); }).ok());

  efd->Signal(3);
  (*loop)->RunOnce(1000);

  EXPECT_EQ(seen, 3u);
}

TEST(EventLoopTest, AddingAnFdTwiceFails) {
  auto loop = EventLoop::Create();
  auto efd = EventFd::Create();
  ASSERT_TRUE((*loop)->Add(efd->fd(), EPOLLIN, [](uint32_t) {}).ok());

  absl::Status s = (*loop)->Add(efd->fd(), EPOLLIN, [](uint32_t) {});

  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
}

TEST(EventLoopTest, HandlerMayRemoveAnotherReadyFd) {
  auto loop = EventLoop::Create();
  auto a = EventFd::Create();
  auto b = EventFd::Create();
  int calls = 0;
  ASSERT_TRUE((*loop)->Add(a->fd(), EPOLLIN, [&](uint32_t) {
    ++calls;
    (*loop)->Remove(a->fd());
    (*loop)->Remove(b->fd());
  }).ok());
  ASSERT_TRUE((*loop)->Add(b->fd(), EPOLLIN, [&](uint32_t) {
    ++calls;
    (*loop)->Remove(a->fd());
    (*loop)->Remove(b->fd());
  }).ok());
  a->Signal();
  b->Signal();

  (*loop)->RunOnce(1000);

  EXPECT_EQ(calls, 1);
}

TEST(EventLoopTest, PostAndStopFromAnotherThread) {
  auto loop = EventLoop::Create();
  std::thread::id ran_on;
  std::thread runner([&] { (*loop)->Run(); });
  const std::thread::id runner_id = runner.get_id();

  (*loop)->Post([&] {
    ran_on = std::this_thread::get_id();
    (*loop)->Stop();
  });
  runner.join();

  EXPECT_EQ(ran_on, runner_id);
  EXPECT_TRUE((*loop)->stopped());
}

}  // namespace
}  // namespace keel
