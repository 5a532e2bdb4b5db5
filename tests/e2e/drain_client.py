"""A separate client process for the drain test: puts and masked reads from many threads.

Watches health as a load balancer does and stops sending once the server
says NOT_SERVING. Prints one JSON line: the status of every call by code,
and the subject ids whose puts were acknowledged (OK).

    python drain_client.py DATA_DIR TARGET SECONDS THREADS
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient


def main() -> None:
    data_dir, target, seconds, threads = (
        Path(sys.argv[1]),
        sys.argv[2],
        float(sys.argv[3]),
        int(sys.argv[4]),
    )
    clients = [VaultClient.for_caller(data_dir, "registration", target) for _ in range(4)]
    end = time.monotonic() + seconds
    serving = threading.Event()
    serving.set()
    codes: Counter[str] = Counter()
    acknowledged: list[str] = []
    lock = threading.Lock()

    def watch() -> None:
        while time.monotonic() < end and serving.is_set():
            try:
                answer = clients[0].health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status != health_pb2.HealthCheckResponse.SERVING:
                    serving.clear()
            except grpc.RpcError:
                serving.clear()
            time.sleep(0.05)

    def work(worker: int) -> None:
        stub = clients[worker % len(clients)].vault
        seen: Counter[str] = Counter()
        mine: list[str] = []
        while time.monotonic() < end and serving.is_set():
            subject = f"drain-{uuid.uuid4()}"
            put = pb.PutFieldRequest(
                subject_id=subject,
                field="phone",
                value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
            )
            try:
                stub.PutField(put, timeout=20)
                seen["OK"] += 1
                mine.append(subject)
                get = pb.GetFieldRequest(subject_id=subject, field="phone", view=pb.VIEW_MASKED)
                stub.GetField(get, timeout=20)
                seen["OK"] += 1
            except grpc.RpcError as error:
                seen[error.code().name] += 1
        with lock:
            codes.update(seen)
            acknowledged.extend(mine)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    threading.Thread(target=watch, daemon=True).start()
    print("ready", flush=True)
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    print(json.dumps({"codes": codes, "acknowledged": acknowledged}), flush=True)


if __name__ == "__main__":
    main()
