// How keeld's internals say "expected failure" versus "unexpected failure".
//
// Functions return absl::Status; the API layer (api_server.cc) turns the codes below into a
// typed rpc::Error in the result union, and every other code into a kj::Exception:
//   InvalidArgument    -> invalidArgument      NotFound         -> notFound
//   AlreadyExists      -> alreadyExists        ResourceExhausted -> capacityExhausted
//   Aborted            -> imageLocked          FailedPrecondition -> failedPrecondition
//   PermissionDenied   -> permissionDenied
#pragma once

#include <optional>

#include "absl/status/status.h"
#include "rpc/keel.capnp.h"

namespace keel::agent {

// A disk image or volume is locked by another VM (block::OpenImage's FailedPrecondition).
inline absl::Status ImageLockedError(absl::string_view message) {
  return absl::AbortedError(message);
}

// The typed error for `status`, or nullopt when it is unexpected (an exception).
std::optional<rpc::Error::Code> TypedErrorCode(const absl::Status& status);

// Fills `error` if `status` is an expected failure and returns true; throws a kj::Exception
// (FAILED) for an unexpected one. Must not be called with an OK status.
bool FillErrorOrThrow(const absl::Status& status, rpc::Error::Builder error);

}  // namespace keel::agent
