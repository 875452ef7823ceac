"""`motus-ros bench perception --transport udp --compression jpeg`: the remote-policy measurement's
path runs end to end (UDP only, JPEG cameras, decoding receiver, policy reading compressed frames)
and reports what the README table quotes. Numbers are not asserted, only that they are measured."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MOTUS_ROS = str(Path(sys.executable).parent / "motus-ros")


@pytest.mark.e2e
def test_udp_jpeg_streams_and_policy_are_measured():
    domain = 160 + os.getpid() % 40
    result = subprocess.run(
        [MOTUS_ROS, "bench", "perception", "--transport", "udp", "--compression", "jpeg", "--duration", "2",
         "--width", "160", "--height", "120", "--no-baseline", "--policy-duration", "2", "--domain", str(domain)],
        capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["transport"] == "udp" and report["compression"] == "jpeg"
    streams = report["streams"]
    assert streams["transports"] == "UDPv4"
    received = sum(s["received"] for s in streams["streams"].values())
    assert received > 0 and streams["frames_lost"] == sum(s["sent"] for s in streams["streams"].values()) - received
    assert streams["bandwidth_MB_s"] > 0
    # the codec is measured on renders of the cell, not asserted beyond the quality floor
    assert min(streams["psnr_db"].values()) >= 35.0
    assert streams["encode_per_frame"]["p50_ms"] is not None and streams["decode_per_frame"]["p50_ms"] is not None
    policy = report["policy"]
    assert policy.get("image_transport") == "compressed", policy
    assert policy["chunks"] > 0 and policy["camera_stamp_to_chunk"]["p50_ms"] > 0
