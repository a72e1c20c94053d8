"""An independent end-to-end-encryption Matrix client for the e2e tests: matrix-nio (vodozemac).

One process is one logged-in device. It reads one JSON request per line on stdin,
    {"id": 1, "cmd": "login", "args": {...}}
and answers one JSON line per request on stdout, in completion order (requests run concurrently):
    {"id": 1, "ok": true, "result": ...}   or   {"id": 1, "ok": false, "error": "..."}
Logs go to stderr. test/support/E2eeClient.ts is the typed driver; the commands are the
`cmd_*` methods below. After login a background loop syncs, uploads/queries/claims keys, records
every timeline event and each m.room_key received, and retries decrypting the undecryptable
ones whenever new room keys may have arrived.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import traceback
from collections import defaultdict
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    ForwardedRoomKeyEvent,
    JoinError,
    LoginError,
    MegolmEvent,
    RoomCreateError,
    RoomKeyEvent,
    RoomPreset,
    RoomSendError,
    SyncError,
    SyncResponse,
)
from nio.crypto import ENCRYPTION_ENABLED
from nio.exceptions import EncryptionError

log = logging.getLogger("e2ee-client")

MEGOLM = "m.megolm.v1.aes-sha2"
# Types wait_for counts unless told otherwise: messages, decrypted or not.
MESSAGE_TYPES = ("m.room.message", "m.room.encrypted")
SYNC_TIMEOUT_MS = 5_000
DEFAULT_WAIT_MS = 20_000


class CommandError(Exception):
    """A failure reported to the driver as {"ok": false, "error": message}."""


def _error_text(response: Any) -> str:
    if isinstance(response, ErrorResponse):
        return f"{type(response).__name__}: {response.status_code or ''} {response.message}".strip()
    return repr(response)


class Client:
    def __init__(self) -> None:
        self.client: AsyncClient | None = None
        self.auto_join = False
        self.sync_task: asyncio.Task[None] | None = None
        self.sync_error: str | None = None
        self.synced_once = asyncio.Event()
        self.changed = asyncio.Condition()
        # Serializes the crypto requests (key upload/query/claim, group session sharing, sends)
        # of the sync loop and of the commands: nio refuses overlapping ones.
        self.crypto_lock = asyncio.Lock()
        # room_id -> events in timeline order; event_id -> record (also used for dedup).
        self.timelines: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.records: dict[str, dict[str, Any]] = {}
        # event_id -> MegolmEvent (room_id set) of events not (yet) decrypted.
        self.pending: dict[str, MegolmEvent] = {}
        # (sender, sender_key, room_id, session_id) -> count of m.room_key / forwarded keys.
        self.room_keys: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        # room_id -> the outbound Megolm sessions this client sent with there, and their recipients.
        self.outbound: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.closing = False

    # --- helpers --------------------------------------------------------------------------------

    def _c(self) -> AsyncClient:
        if self.client is None:
            raise CommandError("not logged in: send login first")
        if self.sync_error is not None:
            raise CommandError(f"sync loop failed: {self.sync_error}")
        return self.client

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _wait_until(self, predicate: Any, timeout_ms: float, what: str) -> None:
        async def wait() -> None:
            async with self.changed:
                while not predicate():
                    if self.sync_error is not None:
                        raise CommandError(f"sync loop failed: {self.sync_error}")
                    await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise CommandError(f"timed out after {timeout_ms:.0f} ms waiting for {what}") from None

    async def _wait_room(self, room_id: str, timeout_ms: float, encrypted: bool | None = None) -> None:
        c = self._c()

        def ready() -> bool:
            room = c.rooms.get(room_id)
            return room is not None and (encrypted is None or room.encrypted == encrypted)

        await self._wait_until(ready, timeout_ms, f"room {room_id} in the sync")

    # --- recording --------------------------------------------------------------------------------

    def _record_event(self, room_id: str, event: Any) -> None:
        event_id = getattr(event, "event_id", None)
        if not event_id or event_id in self.records:
            return
        source = getattr(event, "source", {}) or {}
        record: dict[str, Any] = {"event_id": event_id, "sender": getattr(event, "sender", None)}
        if isinstance(event, MegolmEvent):
            event.room_id = room_id
            record.update(
                type="m.room.encrypted",
                body=None,
                decrypted=False,
                undecryptable=True,
                session_id=event.session_id,
                was_undecryptable=True,
            )
            self.pending[event_id] = event
        else:
            self._fill_plain(record, event, source)
        self.records[event_id] = record
        self.timelines[room_id].append(record)

    @staticmethod
    def _fill_plain(record: dict[str, Any], event: Any, source: dict[str, Any]) -> None:
        content = source.get("content") if isinstance(source.get("content"), dict) else {}
        record.update(
            type=source.get("type"),
            body=getattr(event, "body", None) or content.get("body"),
            decrypted=bool(getattr(event, "decrypted", False)),
            undecryptable=False,
        )
        session_id = getattr(event, "session_id", None)
        if session_id:
            record["session_id"] = session_id
        record.setdefault("was_undecryptable", False)

    def _retry_pending(self) -> int:
        c = self.client
        if c is None or not self.pending:
            return 0
        done = 0
        for event_id, megolm in list(self.pending.items()):
            try:
                decrypted = c.decrypt_event(megolm)
            except EncryptionError:
                continue
            except Exception as e:  # noqa: BLE001 - keep syncing whatever one event does
                log.warning("retrying decryption of %s failed: %r", event_id, e)
                continue
            if isinstance(decrypted, MegolmEvent) or not getattr(decrypted, "decrypted", False):
                continue
            record = self.records[event_id]
            self._fill_plain(record, decrypted, getattr(decrypted, "source", {}) or {})
            record["session_id"] = megolm.session_id
            record["late_decrypted_at"] = int(time.time() * 1000)
            del self.pending[event_id]
            done += 1
        return done

    def _on_to_device(self, event: Any) -> None:
        if isinstance(event, (RoomKeyEvent, ForwardedRoomKeyEvent)):
            sender_key = getattr(event, "sender_key", "") or ""
            key = (event.sender, sender_key, event.room_id, event.session_id)
            entry = self.room_keys.get(key)
            if entry is None:
                entry = self.room_keys[key] = {
                    "sender": event.sender,
                    "sender_key": sender_key,
                    "room_id": event.room_id,
                    "session_id": event.session_id,
                    "algorithm": event.algorithm,
                    "count": 0,
                    "forwarded": 0,
                }
            entry["count"] += 1
            if isinstance(event, ForwardedRoomKeyEvent):
                entry["forwarded"] += 1

    # --- sync loop --------------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        c = self.client
        assert c is not None
        first = True
        failures = 0
        while not self.closing:
            response = await c.sync(timeout=0 if first else SYNC_TIMEOUT_MS, full_state=first)
            if isinstance(response, SyncError):
                failures += 1
                log.warning("sync failed (%d): %s", failures, _error_text(response))
                if failures >= 20:
                    raise RuntimeError(f"sync failed 20 times in a row: {_error_text(response)}")
                await asyncio.sleep(min(0.2 * failures, 2))
                continue
            failures = 0
            first = False
            assert isinstance(response, SyncResponse)
            # nio has already decrypted what it could in place (to-device first, then timelines).
            for event in response.to_device_events:
                self._on_to_device(event)
            for room_id, info in response.rooms.join.items():
                for event in info.timeline.events:
                    self._record_event(room_id, event)
            await self._crypto_housekeeping()
            self._retry_pending()
            if self.auto_join:
                for room_id in list(response.rooms.invite.keys()):
                    result = await c.join(room_id)
                    if isinstance(result, JoinError):
                        log.warning("auto-join of %s failed: %s", room_id, _error_text(result))
            self.synced_once.set()
            await self._notify()

    async def _crypto_housekeeping(self) -> None:
        c = self.client
        assert c is not None
        async with self.crypto_lock:
            await c.send_to_device_messages()
            if c.should_upload_keys:
                self._check(await c.keys_upload(), "keys upload")
            if c.should_query_keys:
                self._check(await c.keys_query(), "keys query")
            if c.should_claim_keys:
                self._check(await c.keys_claim(c.get_users_for_key_claiming()), "keys claim")

    @staticmethod
    def _check(response: Any, what: str) -> Any:
        if isinstance(response, ErrorResponse):
            log.warning("%s failed: %s", what, _error_text(response))
        return response

    def _sync_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.closing:
            return
        exc = task.exception()
        if exc is not None:
            self.sync_error = f"{type(exc).__name__}: {exc}"
            log.error("sync loop died: %s", "".join(traceback.format_exception(exc)))
            asyncio.ensure_future(self._notify())

    # --- commands ---------------------------------------------------------------------------------

    async def cmd_login(
        self,
        homeserver: str,
        user_id: str,
        password: str,
        store_dir: str,
        device_id: str | None = None,
        device_name: str = "e2ee-test-client",
        auto_join: bool = False,
        timeout_ms: float = DEFAULT_WAIT_MS,
    ) -> dict[str, Any]:
        if self.client is not None:
            raise CommandError("already logged in")
        if not ENCRYPTION_ENABLED:
            raise CommandError("matrix-nio has no encryption support here (vodozemac missing)")
        os.makedirs(store_dir, exist_ok=True)
        config = AsyncClientConfig(store_sync_tokens=True, encryption_enabled=True)
        c = AsyncClient(homeserver, user_id, device_id=device_id or "", store_path=store_dir, config=config)
        response = await c.login(password=password, device_name=device_name)
        if isinstance(response, LoginError):
            await c.close()
            raise CommandError(f"login failed: {_error_text(response)}")
        self.client = c
        self.auto_join = auto_join
        if c.should_upload_keys:
            async with self.crypto_lock:
                self._check(await c.keys_upload(), "keys upload")
        self.sync_task = asyncio.ensure_future(self._sync_loop())
        self.sync_task.add_done_callback(self._sync_done)
        await self._wait_until(self.synced_once.is_set, timeout_ms, "the first sync")
        assert c.olm is not None
        return {
            "user_id": c.user_id,
            "device_id": c.device_id,
            "access_token": c.access_token,
            "ed25519": c.olm.account.identity_keys["ed25519"],
            "curve25519": c.olm.account.identity_keys["curve25519"],
        }

    async def cmd_create_room(
        self,
        name: str | None = None,
        encrypted: bool = True,
        invite: list[str] | None = None,
        is_direct: bool = False,
        timeout_ms: float = DEFAULT_WAIT_MS,
    ) -> str:
        c = self._c()
        initial_state = []
        if encrypted:
            # As Element creates rooms: encryption in the initial state, so no message is ever
            # sent in the clear.
            initial_state.append({"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}})
        response = await c.room_create(
            name=name,
            invite=invite or [],
            is_direct=is_direct,
            preset=RoomPreset.trusted_private_chat if is_direct else RoomPreset.private_chat,
            initial_state=initial_state,
        )
        if isinstance(response, RoomCreateError):
            raise CommandError(f"createRoom failed: {_error_text(response)}")
        room_id = response.room_id
        if is_direct and invite:
            await self._mark_direct(room_id, invite)
        await self._wait_room(room_id, timeout_ms, encrypted=encrypted or None)
        return room_id

    async def _mark_direct(self, room_id: str, users: list[str]) -> None:
        """Adds the room to m.direct account data, as Element does for a DM it creates."""
        c = self._c()
        path = f"/_matrix/client/v3/user/{c.user_id}/account_data/m.direct"
        current: dict[str, list[str]] = {}
        got = await c.send("GET", path, headers={"Authorization": f"Bearer {c.access_token}"})
        if got.status == 200:
            current = await got.json()
        for user in users:
            rooms = current.setdefault(user, [])
            if room_id not in rooms:
                rooms.append(room_id)
        put = await c.send(
            "PUT",
            path,
            json.dumps(current),
            headers={"Authorization": f"Bearer {c.access_token}", "Content-Type": "application/json"},
        )
        if put.status != 200:
            raise CommandError(f"setting m.direct failed: {put.status} {await put.text()}")

    async def cmd_join(self, room_id: str, timeout_ms: float = DEFAULT_WAIT_MS) -> str:
        c = self._c()
        response = await c.join(room_id)
        if isinstance(response, JoinError):
            raise CommandError(f"join failed: {_error_text(response)}")
        await self._wait_room(room_id, timeout_ms)
        return response.room_id

    async def cmd_invite(self, room_id: str, user_id: str) -> bool:
        c = self._c()
        response = await c.room_invite(room_id, user_id)
        if isinstance(response, ErrorResponse):
            raise CommandError(f"invite failed: {_error_text(response)}")
        return True

    async def cmd_wait_member(
        self, room_id: str, user_id: str, membership: str = "join", timeout_ms: float = DEFAULT_WAIT_MS
    ) -> bool:
        """Waits until this client's sync shows `user_id` with that membership (join or invite)."""
        c = self._c()

        def seen() -> bool:
            room = c.rooms.get(room_id)
            if room is None:
                return False
            if membership == "invite":
                return user_id in room.invited_users
            return user_id in room.users and user_id not in room.invited_users

        await self._wait_until(seen, timeout_ms, f"{user_id} to {membership} {room_id}")
        return True

    async def cmd_send_text(self, room_id: str, body: str, timeout_ms: float = DEFAULT_WAIT_MS) -> str:
        c = self._c()
        await self._wait_room(room_id, timeout_ms)
        async with self.crypto_lock:
            if c.should_query_keys:
                self._check(await c.keys_query(), "keys query")
            response = await c.room_send(
                room_id,
                "m.room.message",
                {"msgtype": "m.text", "body": body},
                ignore_unverified_devices=True,
            )
        if isinstance(response, RoomSendError):
            raise CommandError(f"send failed: {_error_text(response)}")
        self._record_outbound(room_id)
        return response.event_id

    def _record_outbound(self, room_id: str) -> None:
        """Notes whom the room's current outbound Megolm session went to, the first time it is used
        and whenever it grows: a reply that never comes is often a key that never went."""
        c = self.client
        assert c is not None and c.olm is not None
        session = c.olm.outbound_group_sessions.get(room_id)
        if session is None:
            return
        shared = sorted(f"{u}|{d}" for u, d in session.users_shared_with)
        entries = self.outbound[room_id]
        if entries and entries[-1]["session_id"] == session.id:
            entries[-1]["shared_with"] = shared
            return
        room = c.rooms.get(room_id)
        members = list(room.users.keys()) if room else []
        entries.append(
            {
                "session_id": session.id,
                "shared_with": shared,
                "members": members,
                "known_devices": {u: [d.id for d in c.device_store.active_user_devices(u)] for u in members},
            }
        )

    async def cmd_messages(self, room_id: str, types: list[str] | None = None) -> list[dict[str, Any]]:
        self._c()
        return [dict(r) for r in self.timelines.get(room_id, []) if types is None or r["type"] in types]

    async def cmd_wait_for(
        self,
        room_id: str,
        count: int = 1,
        sender: str | None = None,
        types: list[str] | None = None,
        decrypted: bool = False,
        body: str | None = None,
        timeout_ms: float = DEFAULT_WAIT_MS,
    ) -> list[dict[str, Any]]:
        """Waits until `count` matching events are in the room's timeline; returns the matching ones.

        Matching: type in `types` (default m.room.message and m.room.encrypted), from `sender` if
        given, with that `body` if given, and decrypted if `decrypted`.
        """
        self._c()
        wanted = tuple(types) if types else MESSAGE_TYPES

        def matching() -> list[dict[str, Any]]:
            return [
                r
                for r in self.timelines.get(room_id, [])
                if r["type"] in wanted
                and (sender is None or r["sender"] == sender)
                and (body is None or r["body"] == body)
                and (not decrypted or r["decrypted"])
            ]

        what = f"{count} event(s) in {room_id}" + (f" from {sender}" if sender else "")
        await self._wait_until(lambda: len(matching()) >= count, timeout_ms, what)
        return [dict(r) for r in matching()]

    async def cmd_room_key_stats(self) -> list[dict[str, Any]]:
        self._c()
        return [dict(v) for v in self.room_keys.values()]

    async def cmd_outbound_sessions(self, room_id: str) -> list[dict[str, Any]]:
        self._c()
        return [dict(e) for e in self.outbound.get(room_id, [])]

    async def cmd_device_keys(self, user_id: str, query: bool = True) -> dict[str, Any]:
        """The devices and identity keys nio knows for `user_id` (after a fresh /keys/query)."""
        c = self._c()
        assert c.olm is not None
        server: dict[str, Any] | None = None
        if query:
            async with self.crypto_lock:
                c.olm.users_for_key_query.add(user_id)
                response = await c.keys_query()
            if isinstance(response, ErrorResponse):
                raise CommandError(f"keys query failed: {_error_text(response)}")
            server = {
                device_id: {
                    "ed25519": payload.get("keys", {}).get(f"ed25519:{device_id}"),
                    "curve25519": payload.get("keys", {}).get(f"curve25519:{device_id}"),
                }
                for device_id, payload in response.device_keys.get(user_id, {}).items()
            }
        devices = [
            {
                "device_id": d.id,
                "ed25519": d.ed25519,
                "curve25519": d.curve25519,
                "display_name": d.display_name,
                "deleted": d.deleted,
            }
            for d in c.device_store.active_user_devices(user_id)
        ]
        if user_id == c.user_id:
            ident = c.olm.account.identity_keys
            devices.append(
                {
                    "device_id": c.device_id,
                    "ed25519": ident["ed25519"],
                    "curve25519": ident["curve25519"],
                    "display_name": "(this client)",
                    "deleted": False,
                }
            )
        return {"devices": devices, "server": server}

    async def cmd_export_keys(self, path: str, passphrase: str) -> bool:
        """Writes this device's megolm session keys to `path` (Element's key export format)."""
        await self._c().export_keys(path, passphrase)
        return True

    async def cmd_import_keys(self, path: str, passphrase: str) -> int:
        """Imports megolm session keys from an export; returns how many stored events it decrypted."""
        await self._c().import_keys(path, passphrase)
        decrypted = self._retry_pending()
        await self._notify()
        return decrypted

    async def cmd_close(self) -> bool:
        self.closing = True
        if self.sync_task is not None:
            self.sync_task.cancel()
            try:
                await self.sync_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.client is not None:
            await self.client.close()
        return True


async def main() -> None:
    logging.basicConfig(
        level=os.environ.get("E2EE_CLIENT_LOG_LEVEL", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    state = Client()
    tasks: set[asyncio.Task[None]] = set()
    done = asyncio.Event()

    def answer(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async def handle(line: bytes) -> None:
        request_id: Any = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            cmd = request.get("cmd")
            method = getattr(state, f"cmd_{cmd}", None) if isinstance(cmd, str) else None
            if method is None:
                raise CommandError(f"unknown command {cmd!r}")
            result = await method(**(request.get("args") or {}))
            answer({"id": request_id, "ok": True, "result": result})
            if cmd == "close":
                done.set()
        except CommandError as e:
            answer({"id": request_id, "ok": False, "error": str(e)})
        except Exception as e:  # noqa: BLE001 - every failure goes back to the driver
            log.error("command failed: %s", traceback.format_exc())
            answer({"id": request_id, "ok": False, "error": f"{type(e).__name__}: {e}"})

    async def read() -> None:
        while not done.is_set():
            line = await reader.readline()
            if not line:
                break
            if not line.strip():
                continue
            task = asyncio.ensure_future(handle(line))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        done.set()

    reading = asyncio.ensure_future(read())
    await done.wait()
    reading.cancel()
    if not state.closing:
        await state.cmd_close()
    for task in list(tasks):
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
