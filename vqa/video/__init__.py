"""Video reading: probing, single-pass key-frame decoding, typed errors."""
from vqa.video.decode import DecodedVideo, iter_frames, key_frame_times, read_video
from vqa.video.errors import NoVideoStream, VideoCorrupt, VideoEmpty, VideoError, VideoNotFound
from vqa.video.probe import VideoInfo, probe

__all__ = [
    "DecodedVideo",
    "NoVideoStream",
    "VideoCorrupt",
    "VideoEmpty",
    "VideoError",
    "VideoInfo",
    "VideoNotFound",
    "iter_frames",
    "key_frame_times",
    "probe",
    "read_video",
]
