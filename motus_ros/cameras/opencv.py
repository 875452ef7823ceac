"""OpenCV capture: a V4L2 device (index or /dev/videoN) or a video file.

Devices block in read() until the driver delivers a frame and are stamped on receipt. Files are
paced at `fps` (0 = the file's own frame rate) through CameraFrame.due and, at the end, either
loop (`loop=True`) or raise EndOfStream.
"""
from __future__ import annotations

import os
import time

import numpy as np

from motus_ros.cameras.base import CameraBackend, CameraError, CameraFrame, EndOfStream


def _is_device(source: str) -> bool:
    return source.isdigit() or source.startswith("/dev/video")


class OpenCVBackend(CameraBackend):
    """cv2.VideoCapture on a V4L2 device or a video file; frames returned as RGB."""

    def __init__(self, source: str | int = 0, width: int = 640, height: int = 480, fps: float = 30.0,
                 loop: bool = True):
        self.source = str(source)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.loop = bool(loop)
        self.is_device = _is_device(self.source)
        self.description = f"opencv:{self.source}"
        self._cap = None
        self._period = 0.0
        self._next_due = 0.0

    def open(self) -> None:
        import cv2  # noqa: PLC0415 - keep import cost off module import

        if self.is_device:
            index = int(self.source) if self.source.isdigit() else self.source
            cap = cv2.VideoCapture(index, cv2.CAP_V4L2)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
                if self.fps > 0:
                    cap.set(cv2.CAP_PROP_FPS, self.fps)
        else:
            if not os.path.isfile(self.source):
                raise CameraError(f"{self.description}: video file not found")
            cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self.description}: cannot open "
                              f"{'V4L2 device' if self.is_device else 'video file'}")
        self._cap = cap
        if not self.is_device:
            rate = self.fps if self.fps > 0 else float(cap.get(cv2.CAP_PROP_FPS) or 30.0)
            self._period = 1.0 / rate
            self._next_due = time.monotonic()

    def _grab(self) -> np.ndarray | None:
        ok, bgr = self._cap.read()
        return bgr if ok and bgr is not None else None

    def read(self, timeout: float = 1.0) -> CameraFrame | None:
        import cv2  # noqa: PLC0415

        if self._cap is None:
            raise CameraError(f"{self.description}: read() before open()")
        bgr = self._grab()
        if bgr is None and not self.is_device:
            if not self.loop:
                raise EndOfStream(f"{self.description}: end of video file")
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            bgr = self._grab()
            if bgr is None:
                raise CameraError(f"{self.description}: video file has no readable frames")
        if bgr is None:
            raise CameraError(f"{self.description}: device returned no frame (unplugged?)")
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        if (bgr.shape[1], bgr.shape[0]) != (self.width, self.height):
            bgr = cv2.resize(bgr, (self.width, self.height), interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        due = None
        if not self.is_device:
            due = self._next_due
            # Never accumulate a backlog: a late reader restarts the schedule from now.
            self._next_due = max(self._next_due + self._period, time.monotonic())
        return CameraFrame(image=rgb, due=due)

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
