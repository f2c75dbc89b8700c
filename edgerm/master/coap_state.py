"""Bounded per-request state for the master's CoAP endpoint (over aiocoap 0.4.17).

Role: aiocoap remembers every request it receives for EXCHANGE_LIFETIME
(247 s) to answer duplicates: one dict entry, one loop timer and the whole
response ``Message`` (about 2.5 KiB) per request, and keeps a block-wise
transfer's assembled message for 93 to 186 s after its last block (about
40 KiB for a module). At 10,000 agents heartbeating at 0.1 Hz that is
~250,000 live entries and hundreds of MiB. This module replaces those caches
on the master's server context with bounded ones:

- **Deduplication** (RFC 7252 §4.5), :class:`DedupCache`: entries for
  EXCHANGE_LIFETIME, bounded by count and bytes (oldest dropped first), kept
  in arrival order so expiry needs no timer; a stored response is its
  encoded bytes, not a ``Message``, and an entry is keyed by the peer's
  address and the message id, so it keeps no remote object alive (a
  duplicate is answered to where it came from).
- **Idempotent requests have a short retry memory only** (:func:`idempotent`):
  every call of the agent API (``POST /agent``: REGISTER, HEARTBEAT, UPDATE
  carry ids, uuids and full state, so a retransmitted one handled twice has
  the effect of one; ``POST /agents/{id}/commands`` confirms a cursor) and
  every plain GET. Their responses are kept for :data:`RETRY_MEMORY` (15 s,
  bounded by count and bytes; keyed by the peer's address, not its remote
  object), so a retransmission is answered from memory instead of being
  handled again: when the master falls behind (a loaded machine), agents
  retransmit, and handling every retransmission again doubled and tripled
  its work exactly then, so it never caught up (bench/scale.py: p50 of
  seconds). A later duplicate is simply handled again. Observe
  registrations and block-wise uploads stay deduplicated for
  EXCHANGE_LIFETIME: handling those twice would replace an observation or
  append a block twice.
- **No garbage cycle per request** (:class:`_LeanTokenManager`): aiocoap's
  ``TokenManager.process_request`` ties each incoming request into a
  reference cycle (its ``on_event`` closure holds ``stop``, a partial that
  holds ``on_event``), so the request, its options, its remote, the pipe and
  the closures (17 objects per heartbeat) are freed only by the cyclic
  garbage collector: at 1,000 heartbeats/s a young-generation pass every
  ~20 s of 20,000 such objects, each stopping the loop for 15-30 ms of CPU
  (bench/scale.py, ``master_inside.gc_*``). The same method, with the cycle
  broken when the request ends, lets reference counting free them at once.
- **An answer without the machinery** (``answer`` of
  :func:`bound_server_state`): a new CON request it answers (the master's
  plain heartbeats) gets its reply piggybacked at once, kept in the retry
  memory like any other; aiocoap's token manager, pipe, render task and
  empty-ACK timer (about half the CPU of a heartbeat) are not made for it.
- **Datagrams read in batches** (:class:`_BatchedReceiver`): aiocoap reads
  one datagram per turn of the event loop, each after a read of the error
  queue; the master's socket reads up to :data:`READ_BATCH` per turn, so a
  burst (a fleet starting, agents retransmitting) drains in few turns.
- **Block-wise** (:class:`BoundedBlock1Spool`, :class:`BoundedBlock2Cache`):
  an assembly or a response being served in blocks is dropped as soon as its
  last block has gone, and at most ``max_entries`` / ``max_bytes`` are held
  (MAX_TRANSMIT_WAIT at most otherwise).

Rules:
- :func:`bound_server_state` is applied to each UDP server context right
  after it is created; :func:`bound_resource_state` to each resource.
  Nothing else in edgerm touches aiocoap's internals.
- Dropping an entry early never breaks the protocol: a duplicate handled
  twice is harmless for the idempotent calls above, and an evicted
  block-wise transfer is answered 4.08 (Request Entity Incomplete) and
  restarted by the client.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiocoap
from aiocoap import blockwise
from aiocoap.message import Direction
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import ACK, CON
from aiocoap.optiontypes import BlockOption
from aiocoap.pipe import Pipe, error_to_message, run_driving_pipe
from aiocoap.tokenmanager import TokenManager
from aiocoap.util import socknumbers
from aiocoap.util.asyncio.recvmsg import RecvmsgSelectorDatagramTransport

from edgerm.coap_util import AGENT_PATH, AGENTS_PREFIX, COMMANDS_SEGMENT

EXCHANGE_LIFETIME = TransportTuning().EXCHANGE_LIFETIME  # 247 s
MAX_TRANSMIT_WAIT = TransportTuning().MAX_TRANSMIT_WAIT  # 93 s
DEFAULT_DEDUP_ENTRIES = 20_000
DEFAULT_DEDUP_BYTES = 4 * 1024 * 1024
DEFAULT_BLOCK_ENTRIES = 256
#: How long an idempotent request's response is kept to answer its retransmissions: a CON is retransmitted
#: after ~2, 6, 14 and 30 s (ACK_TIMEOUT 2 s, doubling), so this covers the first three (about 1 KiB per
#: agent at 0.1 Hz; a later retry is handled again, which is harmless).
RETRY_MEMORY = 15.0
DEFAULT_RETRY_ENTRIES = 40_000
DEFAULT_RETRY_BYTES = 8 * 1024 * 1024
DEFAULT_BLOCK_BYTES = 32 * 1024 * 1024
_ENTRY_OVERHEAD = 200  # bytes counted per entry besides the stored response
#: Datagrams read per readiness callback of the UDP socket (aiocoap reads one, with an error-queue read
#: before it): enough to drain a burst in few loop turns, few enough that one turn stays short.
READ_BATCH = 16


def idempotent(message: aiocoap.Message) -> bool:
    """A request whose duplicate may simply be handled again (see the module docstring)."""
    code = message.code
    if code == aiocoap.GET:
        return message.opt.observe is None
    if code != aiocoap.POST or message.opt.block1 is not None:
        return False
    path = message.opt.uri_path
    return path == AGENT_PATH or (len(path) == 3 and path[0] == AGENTS_PREFIX and path[2] == COMMANDS_SEGMENT)


@dataclass(slots=True)
class _Entry:
    expires: float
    raw: bytes | None = None  # the encoded response, once sent


class DedupCache:
    """Recently seen (remote, message id) pairs and their responses, bounded."""

    def __init__(
        self,
        lifetime: float = EXCHANGE_LIFETIME,
        max_entries: int = DEFAULT_DEDUP_ENTRIES,
        max_bytes: int = DEFAULT_DEDUP_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime = lifetime
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[tuple[Any, int], _Entry] = OrderedDict()
        self.bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[Any, int]) -> _Entry | None:
        self._expire()
        return self._entries.get(key)

    def add(self, key: tuple[Any, int]) -> None:
        self._expire()
        self._entries[key] = _Entry(self._clock() + self.lifetime)
        self.bytes += _ENTRY_OVERHEAD
        self._bound()

    def store(self, key: tuple[Any, int], raw: bytes) -> None:
        entry = self._entries.get(key)
        if entry is None or entry.raw is not None:
            return
        entry.raw = raw
        self.bytes += len(raw)
        self._bound()

    def _drop_oldest(self) -> None:
        _, entry = self._entries.popitem(last=False)
        self.bytes -= _ENTRY_OVERHEAD + (len(entry.raw) if entry.raw is not None else 0)

    def _expire(self) -> None:
        now = self._clock()
        entries = self._entries
        while entries and next(iter(entries.values())).expires <= now:
            self._drop_oldest()

    def _bound(self) -> None:
        while self._entries and (len(self._entries) > self.max_entries or self.bytes > self.max_bytes):
            self._drop_oldest()
            self.evicted += 1


#: Answers a request at once, in the callback that received its datagram, or returns None to let aiocoap
#: handle it. A response is piggybacked on the request's ACK and kept for retransmissions like any other;
#: no pipe, no render task and no empty-ACK timer is made for it.
Answer = Callable[[aiocoap.Message], "aiocoap.Message | None"]


def _dedup_key(message: aiocoap.Message) -> tuple[Any, int]:
    """A deduplication key: the peer's address (not its remote object, which would stay alive) and mid."""
    remote = message.remote
    sockaddr = getattr(remote, "sockaddr", None)
    return (sockaddr[:2] if sockaddr is not None else remote), message.mid


class _BoundedMessageManager(MessageManager):  # type: ignore[misc]  # aiocoap ships no type hints
    """aiocoap's UDP message manager with :class:`DedupCache` instead of its timer-per-request dict."""

    _edgerm_dedup: DedupCache
    _edgerm_retries: DedupCache
    _edgerm_answer: Answer | None = None

    def _process_request(self, request: aiocoap.Message) -> None:
        answer = self._edgerm_answer
        if (
            answer is not None
            and request.mtype is CON
            and (request.token, request.remote) not in self.token_manager.incoming_requests
            and (request.remote, request.token) not in self._piggyback_opportunities
        ):
            response = answer(request)
            if response is not None:
                response.token = request.token
                response.remote = request.remote.as_response_address()
                response.request = request
                response.mtype, response.mid = ACK, request.mid  # piggybacked on the request's ACK
                self._send_initially(response)
                return
        super()._process_request(request)

    def _deduplicate_message(self, message: aiocoap.Message) -> bool:
        cache = self._edgerm_retries if idempotent(message) else self._edgerm_dedup
        key = _dedup_key(message)
        entry = cache.get(key)
        if entry is None:
            cache.add(key)
            return False
        if message.mtype is CON and entry.raw is not None:
            # Sent back to where the duplicate came from: entries keep no remote object alive.
            again = aiocoap.Message.decode(entry.raw, message.remote.as_response_address())
            again.direction = Direction.OUTGOING
            self._send_via_transport(again)
        return True

    def _store_response_for_duplicates(self, message: aiocoap.Message) -> None:
        if message.mid is None or message.remote is None:
            return
        request = getattr(message, "request", None)
        cache = self._edgerm_retries if request is not None and idempotent(request) else self._edgerm_dedup
        key = _dedup_key(message)
        entry = cache.get(key)
        if entry is not None and entry.raw is None:
            cache.store(key, message.encode())


class _Deferred:
    """An awaitable that makes its coroutine only when awaited (never awaited: none was made)."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[], Awaitable[Any]]) -> None:
        self._make = make

    def __await__(self) -> Any:
        return self._make().__await__()


class _LeanTokenManager(TokenManager):  # type: ignore[misc]
    """aiocoap 0.4.17's ``TokenManager.process_request``, with its reference cycle broken at the end.

    Identical but for ``on_end`` clearing ``stop`` (see the module docstring) and the render coroutine made
    when its task starts (:class:`_Deferred`)."""

    def process_request(self, request: aiocoap.Message) -> None:
        key = (request.token, request.remote)
        if key in self.incoming_requests:
            # A new request on a token in use (an observation renewed): the old one ends.
            (_, old_stop) = self.incoming_requests.pop(key)
            old_stop()
        pipe = Pipe(request, self.log)
        stop: Any = None

        def on_event(ev: Any) -> bool | None:
            if ev.message is not None:
                m = ev.message
                m.token = request.token
                m.remote = request.remote.as_response_address()
                m.request = request
                self.token_interface.send_message(m, stop)
            else:
                self.log.error(
                    "Requests shouldn't receive errors at the level of a TokenManager any more, but this did: %s", ev
                )
            if not ev.is_last:
                return True
            return None

        def on_end() -> None:
            nonlocal stop
            if key in self.incoming_requests:
                del self.incoming_requests[key]
            stop = None  # the partial holds on_event, whose closure held the partial: the cycle ends here

        stop = pipe.on_event(on_event)
        pipe.on_interest_end(on_end)
        self.incoming_requests[key] = (pipe, stop)
        # aiocoap's Context.render_to_pipe, with the render coroutine made only when its task starts: a
        # request superseded before then (its token reused by the next datagram of the same batch) would
        # otherwise leave a coroutine never awaited (a RuntimeWarning), and without the task's name (a repr
        # of the request, formatted for every request).
        context = self.context
        run_driving_pipe(error_to_message(pipe, self.log), _Deferred(lambda: context._render_to_pipe(pipe)))


class _BatchedReceiver(RecvmsgSelectorDatagramTransport):  # type: ignore[misc]
    """aiocoap 0.4.17's UDP transport, reading up to :data:`READ_BATCH` datagrams per readiness callback.

    aiocoap reads one datagram per callback, each after a read of the socket's error queue (ICMP errors,
    ``IP_RECVERR``): two system calls and one turn of the event loop per datagram. When thousands of
    agents send, other callbacks share every turn, and the socket drains one datagram per turn. Here the
    error queue is read once per callback (an error also makes the socket readable), then datagrams until
    none is waiting or the batch is full; what each read does with a datagram or an error is aiocoap's."""

    def _read_ready(self) -> None:
        protocol = self._protocol
        sock = self._RecvmsgSelectorDatagramTransport__sock
        if sock is None:
            return
        if socknumbers.HAS_RECVERR:
            try:
                data, ancdata, flags, addr = sock.recvmsg(self.max_size, 1024, socknumbers.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                protocol.error_received(exc)
            else:
                protocol.datagram_errqueue_received(data, ancdata, flags, addr)
        for _ in range(READ_BATCH):
            if self._RecvmsgSelectorDatagramTransport__sock is None:  # closed by what the last one did
                return
            try:
                data, ancdata, flags, addr = sock.recvmsg(self.max_size, 1024)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            protocol.datagram_msg_received(data, ancdata, flags, addr)


def bound_server_state(
    context: Any, dedup: DedupCache | None = None, retries: DedupCache | None = None, answer: Answer | None = None
) -> list[DedupCache]:
    """Give each UDP message manager of ``context`` a bounded :class:`DedupCache`, each token manager
    the cycle-free request handling of :class:`_LeanTokenManager` and each UDP socket the batched reads
    of :class:`_BatchedReceiver`; return the caches.

    ``answer`` (see :data:`Answer`) is asked first for every new CON request."""
    caches = []
    for interface in context.request_interfaces:
        if type(interface) is TokenManager:
            interface.__class__ = _LeanTokenManager
        manager = getattr(interface, "token_interface", None)
        if isinstance(manager, MessageManager) and not isinstance(manager, _BoundedMessageManager):
            manager.__class__ = _BoundedMessageManager
            manager._edgerm_dedup = cache = dedup if dedup is not None else DedupCache()
            manager._edgerm_retries = (
                retries if retries is not None else DedupCache(RETRY_MEMORY, DEFAULT_RETRY_ENTRIES, DEFAULT_RETRY_BYTES)
            )
            manager._recent_messages.clear()
            manager._edgerm_answer = answer
            caches.append(cache)
            transport = getattr(getattr(manager, "message_interface", None), "transport", None)
            if type(transport) is RecvmsgSelectorDatagramTransport:
                transport.__class__ = _BatchedReceiver
    return caches


# -- block-wise ---------------------------------------------------------------------------


class _Bounded:
    """An ordered map of block-wise state, expired, bounded by count and bytes."""

    def __init__(self, lifetime: float, max_entries: int, max_bytes: int, clock: Callable[[], float]) -> None:
        self.lifetime, self.max_entries, self.max_bytes = lifetime, max_entries, max_bytes
        self._clock = clock
        self._items: OrderedDict[Any, tuple[float, aiocoap.Message]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> aiocoap.Message | None:
        self._expire()
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        self._items[key] = (self._clock() + self.lifetime, item[1])
        return item[1]

    def put(self, key: Any, message: aiocoap.Message) -> None:
        self.pop(key)
        self._items[key] = (self._clock() + self.lifetime, message)
        self.bytes += len(message.payload)
        while self._items and (len(self._items) > self.max_entries or self.bytes > self.max_bytes):
            self.pop(next(iter(self._items)))

    def pop(self, key: Any) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= len(item[1].payload)

    def _expire(self) -> None:
        now = self._clock()
        while self._items and next(iter(self._items.values()))[0] <= now:
            self.pop(next(iter(self._items)))


class BoundedBlock1Spool:
    """Block1 (upload) assembly, dropped when complete (``Resource._block1``)."""

    def __init__(
        self,
        max_entries: int = DEFAULT_BLOCK_ENTRIES,
        max_bytes: int = DEFAULT_BLOCK_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.assemblies = _Bounded(MAX_TRANSMIT_WAIT, max_entries, max_bytes, clock)

    def feed_and_take(self, req: aiocoap.Message) -> aiocoap.Message:
        block1 = req.opt.block1
        if block1 is None:
            return req
        key = blockwise._extract_block_key(req)
        if block1.block_number == 0:
            assembled = req
        else:
            assembled = self.assemblies.get(key)
            if assembled is None:
                raise blockwise.IncompleteException from None
            try:
                assembled._append_request_block(req)
            except ValueError:  # a gap or an overlap
                self.assemblies.pop(key)
                raise blockwise.IncompleteException from None
        if block1.more:
            self.assemblies.put(key, assembled)
            raise blockwise.ContinueException(block1)
        self.assemblies.pop(key)
        return assembled  # which carries the last block's block1 option


class BoundedBlock2Cache:
    """Responses served in blocks, dropped once the last block went (``Resource._block2``)."""

    def __init__(
        self,
        max_entries: int = DEFAULT_BLOCK_ENTRIES,
        max_bytes: int = DEFAULT_BLOCK_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.completes = _Bounded(MAX_TRANSMIT_WAIT, max_entries, max_bytes, clock)

    async def extract_or_insert(
        self, req: aiocoap.Message, response_builder: Callable[[], Awaitable[aiocoap.Message]]
    ) -> aiocoap.Message:
        block2 = req.opt.block2
        if block2 is None or block2.block_number == 0:
            return self.serve(req, await response_builder())
        cached = self.completes.get(blockwise._extract_block_key(req))
        if cached is None:
            raise blockwise.IncompleteException from None
        return self.serve(req, cached)

    def serve(self, req: aiocoap.Message, assembled: aiocoap.Message) -> aiocoap.Message:
        """The block of ``assembled`` that ``req`` asks for (all of it if it fits), kept while blocks remain."""
        key = blockwise._extract_block_key(req)
        block2 = req.opt.block2
        size = req.remote.maximum_payload_size
        if len(assembled.payload) <= size and (block2 is None or len(assembled.payload) <= block2.size):
            self.completes.pop(key)
            return assembled
        block2 = block2 or BlockOption.BlockwiseTuple(0, 0, req.remote.maximum_block_size_exp)
        block: aiocoap.Message = assembled._extract_block(block2.block_number, block2.size_exponent, size)
        if block.opt.block2 is not None and block.opt.block2.more:
            self.completes.put(key, assembled)
        else:
            self.completes.pop(key)  # the last block: the transfer is complete
        return block


def bound_resource_state(resource: Any) -> None:
    """Replace a resource's block-wise caches with the bounded ones."""
    resource._block1 = BoundedBlock1Spool()
    resource._block2 = BoundedBlock2Cache()
