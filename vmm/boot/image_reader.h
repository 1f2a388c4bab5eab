// ImageReader: random-access, bounds-checked reads of a kernel or initrd image.
//
// Loaders never copy a whole multi-MiB image into a heap buffer (the VMM's peak RSS is
// benchmarked): they read headers into small stack objects and read segment payloads
// straight into the guest-memory host pointer of a range they have already validated
// (ReadIntoGuest below). Every read is exact: a read past the end of the image, or a file
// that shrinks under us, is an error, never a short or garbage buffer.
//
// Example:
//
//   KEEL_ASSIGN_OR_RETURN(FileImageReader kernel, FileImageReader::Open("/vm/vmlinux"));
//   KEEL_ASSIGN_OR_RETURN(auto ehdr, ReadObjAt<Elf64_Ehdr>(kernel, 0));
//
// Thread-safety: ReadAt() is const and uses pread(2), so one reader may serve several
// threads; nothing in Keel does that today.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/fd.h"
#include "vmm/memory/guest_memory.h"

namespace keel::vmm {

class ImageReader {
 public:
  virtual ~ImageReader() = default;

  // What the image is called in error messages (its path for a file).
  virtual const std::string& name() const = 0;

  // The image size in bytes, fixed when the reader was created.
  virtual uint64_t size() const = 0;

  // Reads exactly out.size() bytes starting at `offset`. Fails (OutOfRange) if the range is
  // not entirely inside the image; `out` is then unspecified. Overflow-safe for any offset.
  virtual absl::Status ReadAt(uint64_t offset, std::span<uint8_t> out) const = 0;
};

// An image in a regular file, read with pread(2). Owns the fd.
class FileImageReader final : public ImageReader {
 public:
  // Opens `path` read-only. Fails if it cannot be opened or is not a regular file.
  static absl::StatusOr<FileImageReader> Open(const std::string& path);
  // Reads an already-open file (a descriptor handed over by the agent). Duplicates `fd`, so
  // the caller keeps ownership of its own; `name` is what errors call the image.
  static absl::StatusOr<FileImageReader> FromFd(int fd, std::string name);

  FileImageReader(FileImageReader&&) = default;
  FileImageReader& operator=(FileImageReader&&) = default;

  const std::string& name() const override { return path_; }
  uint64_t size() const override { return size_; }
  absl::Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override;

 private:
  static absl::StatusOr<FileImageReader> FromOwnedFd(ScopedFd fd, std::string name);
  FileImageReader(std::string path, ScopedFd fd, uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size) {}

  std::string path_;
  ScopedFd fd_;
  uint64_t size_ = 0;
};

// An image already in memory (tests and fuzzers). Does not own the bytes: they must outlive
// the reader.
class SpanImageReader final : public ImageReader {
 public:
  SpanImageReader(std::string name, std::span<const uint8_t> bytes)
      : name_(std::move(name)), bytes_(bytes) {}

  const std::string& name() const override { return name_; }
  uint64_t size() const override { return bytes_.size(); }
  absl::Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override;

 private:
  std::string name_;
  std::span<const uint8_t> bytes_;
};

// Fails with OutOfRange, naming the image, unless [offset, offset + len) is inside it.
absl::Status CheckImageRange(const ImageReader& image, uint64_t offset, uint64_t len);

// Reads a trivially-copyable object at `offset`.
template <typename T>
absl::StatusOr<T> ReadObjAt(const ImageReader& image, uint64_t offset) {
  static_assert(std::is_trivially_copyable_v<T>);
  T value;
  absl::Status s = image.ReadAt(offset, std::span(reinterpret_cast<uint8_t*>(&value), sizeof(T)));
  if (!s.ok()) return s;
  return value;
}

// Reads `len` image bytes at `offset` directly into guest memory at `gpa`, without a
// bounce buffer. Both ranges are checked before anything is read.
absl::Status ReadIntoGuest(const ImageReader& image, uint64_t offset, uint64_t len,
                           const GuestMemory& mem, uint64_t gpa);

}  // namespace keel::vmm
