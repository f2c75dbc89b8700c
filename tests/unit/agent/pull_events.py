"""Image pull events in the exact shape dockerd streams them for ``api.pull(stream=True, decode=True)``.

Written out by hand (no registry is reachable where the tests run) after the
stream of a two-layer image with one layer already present: tag line,
per-layer ``Pulling fs layer``/``Waiting``/``Downloading`` (with
``progressDetail`` current/total)/``Verifying Checksum``/``Download
complete``/``Extracting``/``Pull complete``, then digest and status lines.
"""

from __future__ import annotations

MB = 1_000_000

TWO_LAYERS: list[dict[str, object]] = [
    {"status": "Pulling from library/big", "id": "1.0"},
    {"status": "Already exists", "progressDetail": {}, "id": "c0ffee000001"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "a1a1a1a1a1a1"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "b2b2b2b2b2b2"},
    {"status": "Waiting", "progressDetail": {}, "id": "b2b2b2b2b2b2"},
    *(
        {
            "status": "Downloading",
            "progressDetail": {"current": n * 5 * MB, "total": 30 * MB},
            "progress": "[=====>      ]",
            "id": "a1a1a1a1a1a1",
        }
        for n in range(1, 7)
    ),
    {"status": "Verifying Checksum", "progressDetail": {}, "id": "a1a1a1a1a1a1"},
    {"status": "Download complete", "progressDetail": {}, "id": "a1a1a1a1a1a1"},
    *(
        {"status": "Downloading", "progressDetail": {"current": n * 2 * MB, "total": 10 * MB}, "id": "b2b2b2b2b2b2"}
        for n in range(1, 6)
    ),
    {"status": "Download complete", "progressDetail": {}, "id": "b2b2b2b2b2b2"},
    {"status": "Extracting", "progressDetail": {"current": 32768, "total": 30 * MB}, "id": "a1a1a1a1a1a1"},
    {"status": "Pull complete", "progressDetail": {}, "id": "a1a1a1a1a1a1"},
    {"status": "Extracting", "progressDetail": {"current": 32768, "total": 10 * MB}, "id": "b2b2b2b2b2b2"},
    {"status": "Pull complete", "progressDetail": {}, "id": "b2b2b2b2b2b2"},
    {"status": "Digest: sha256:" + "ab" * 32},
    {"status": "Status: Downloaded newer image for big:1.0"},
]
