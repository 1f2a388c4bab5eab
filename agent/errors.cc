#include "agent/errors.h"

#include "kj/exception.h"

namespace keel::agent {

std::optional<rpc::Error::Code> TypedErrorCode(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return rpc::Error::Code::INVALID_ARGUMENT;
    case absl::StatusCode::kNotFound:
      return rpc::Error::Code::NOT_FOUND;
    case absl::StatusCode::kAlreadyExists:
      return rpc::Error::Code::ALREADY_EXISTS;
    case absl::StatusCode::kResourceExhausted:
      return rpc::Error::Code::CAPACITY_EXHAUSTED;
    case absl::StatusCode::kAborted:
      return rpc::Error::Code::IMAGE_LOCKED;
    case absl::StatusCode::kFailedPrecondition:
      return rpc::Error::Code::FAILED_PRECONDITION;
    case absl::StatusCode::kPermissionDenied:
      return rpc::Error::Code::PERMISSION_DENIED;
    default:
      return std::nullopt;
  }
}

bool FillErrorOrThrow(const absl::Status& status, rpc::Error::Builder error) {
  std::optional<rpc::Error::Code> code = TypedErrorCode(status);
  if (!code) {
    kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                          kj::heapString(status.message().data(),
                                                         status.message().size())));
  }
  error.setCode(*code);
  error.setMessage(std::string(status.message()));
  return true;
}

}  // namespace keel::agent
