#include "http/parked_connections.h"

#include "core/timeval.h"

#include <unistd.h>

#include <algorithm>

namespace sockdispatch {

// A parked connection: about 170 bytes, the read event most of it.
struct ParkedConnections::Record {
  event readEvent; // one-shot: it fires once, and the record is gone with it
  ParkedConnections *owner;
  Record *prev = nullptr;
  Record *next = nullptr;
  HttpConnection::Clock::time_point deadline;
  int fd;
  uint32_t requestsAnswered;
};

ParkedConnections::ParkedConnections(event_base *base, Hooks hooks)
    : base_(base), hooks_(std::move(hooks)) {
  timer_.reset(evtimer_new(
      base,
      [](evutil_socket_t, short, void *ctx) { static_cast<ParkedConnections *>(ctx)->onTimer(); },
      this));
}

ParkedConnections::~ParkedConnections() {
  Record *record = head_;
  while (record != nullptr) {
    Record *next = record->next;
    event_del(&record->readEvent);
    ::close(record->fd);
    delete record;
    record = next;
  }
}

void ParkedConnections::park(std::vector<HttpConnection::Idle> idle) {
  std::sort(idle.begin(), idle.end(),
            [](const auto &a, const auto &b) { return a.deadline < b.deadline; });
  Record *oldHead = head_;
  for (HttpConnection::Idle &connection : idle) {
    auto *record = new Record;
    record->owner = this;
    record->deadline = connection.deadline;
    record->requestsAnswered = connection.requestsAnswered;
    record->fd = connection.fd.release();
    event_assign(&record->readEvent, base_, record->fd, EV_READ, &ParkedConnections::onReadable,
                 record);
    event_add(&record->readEvent, nullptr);
    append(record);
  }
  if (head_ != oldHead) {
    armTimer();
  }
}

void ParkedConnections::wakeAll() {
  while (head_ != nullptr) {
    wake(head_);
  }
  event_del(timer_.get());
}

void ParkedConnections::onReadable(evutil_socket_t /*fd*/, short /*events*/, void *ctx) {
  auto *record = static_cast<Record *>(ctx);
  ParkedConnections *self = record->owner;
  const bool wasHead = record == self->head_;
  self->wake(record);
  if (wasHead) {
    self->armTimer();
  }
}

void ParkedConnections::wake(Record *record) {
  unlink(record);
  event_del(&record->readEvent);
  HttpConnection::Idle idle{UniqueFd(record->fd), record->deadline, record->requestsAnswered};
  delete record;
  hooks_.wake(std::move(idle));
}

void ParkedConnections::onTimer() {
  const auto now = HttpConnection::Clock::now();
  while (head_ != nullptr && head_->deadline <= now) {
    Record *record = head_;
    unlink(record);
    event_del(&record->readEvent);
    ::close(record->fd); // nothing asked within the keep-alive timeout: closed quietly
    delete record;
    hooks_.expired();
  }
  armTimer();
}

// In deadline order, from the tail back: the deadlines of a call come after the last call's,
// so this is one step in practice.
void ParkedConnections::append(Record *record) {
  Record *after = tail_;
  while (after != nullptr && record->deadline < after->deadline) {
    after = after->prev;
  }
  record->prev = after;
  record->next = after != nullptr ? after->next : head_;
  (record->next != nullptr ? record->next->prev : tail_) = record;
  (after != nullptr ? after->next : head_) = record;
  ++count_;
}

void ParkedConnections::unlink(Record *record) {
  (record->prev != nullptr ? record->prev->next : head_) = record->next;
  (record->next != nullptr ? record->next->prev : tail_) = record->prev;
  record->prev = record->next = nullptr;
  --count_;
}

void ParkedConnections::armTimer() {
  if (head_ == nullptr) {
    event_del(timer_.get());
    return;
  }
  timeval left = toTimeval(head_->deadline - HttpConnection::Clock::now());
  event_add(timer_.get(), &left);
}

} // namespace sockdispatch
