#include "vmm/boot/image_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "base/status.h"

namespace keel::vmm {

absl::Status CheckImageRange(const ImageReader& image, uint64_t offset, uint64_t len) {
  if (offset > image.size() || len > image.size() - offset) {
    return absl::OutOfRangeError(absl::StrFormat(
        "%s is truncated: need %u bytes at offset %#x but the image is only %u bytes", image.name(),
        len, offset, image.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<FileImageReader> FileImageReader::Open(const std::string& path) {
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError(errno, "cannot open ", path);
  return FromOwnedFd(std::move(fd), path);
}

absl::StatusOr<FileImageReader> FileImageReader::FromFd(int fd, std::string name) {
  ScopedFd own(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!own) return ErrnoError(errno, "cannot use the descriptor of ", name);
  return FromOwnedFd(std::move(own), std::move(name));
}

absl::StatusOr<FileImageReader> FileImageReader::FromOwnedFd(ScopedFd fd, std::string name) {
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return ErrnoError(errno, "cannot stat ", name);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " is not a regular file; pass the path of an image file"));
  }
  return FileImageReader(std::move(name), std::move(fd), static_cast<uint64_t>(st.st_size));
}

absl::Status FileImageReader::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  KEEL_RETURN_IF_ERROR(CheckImageRange(*this, offset, out.size()));
  size_t done = 0;
  while (done < out.size()) {
    // pread takes at most SSIZE_MAX; Linux caps one call at ~2 GiB anyway.
    const size_t chunk = std::min<size_t>(out.size() - done, 1u << 30);
    const ssize_t n = pread(fd_.get(), out.data() + done, chunk, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot read ", path_);
    }
    if (n == 0) {
      // The file shrank after Open(): never hand back a partially filled buffer.
      return absl::OutOfRangeError(
          absl::StrFormat("%s ends at %u bytes, before the %u bytes it had when it was opened; "
                          "was it modified while the VM was starting?",
                          path_, offset + done, size_));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status SpanImageReader::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  KEEL_RETURN_IF_ERROR(CheckImageRange(*this, offset, out.size()));
  if (!out.empty()) memcpy(out.data(), bytes_.data() + offset, out.size());
  return absl::OkStatus();
}

absl::Status ReadIntoGuest(const ImageReader& image, uint64_t offset, uint64_t len,
                           const GuestMemory& mem, uint64_t gpa) {
  KEEL_RETURN_IF_ERROR(CheckImageRange(image, offset, len));
  uint8_t* host = mem.HostPtr(gpa, len);
  if (host == nullptr) {
    return absl::OutOfRangeError(absl::StrFormat(
        "%s: %u bytes at guest address %#x do not fit in guest RAM", image.name(), len, gpa));
  }
  if (len > SIZE_MAX) return absl::OutOfRangeError("image range too large for this host");
  return image.ReadAt(offset, std::span(host, static_cast<size_t>(len)));
}

}  // namespace keel::vmm
