"""Video reading: probing, single-pass key-frame decoding, typed errors."""
from vqa.video.decode import DecodedVideo, iter_frames, key_frame_times, read_video
from vqa.video.errors import NoVideoStream, VideoCorrupt, VideoEmpty, VideoError, VideoNotFound, failure_reason
from vqa.video.probe import VideoInfo, probe

# Lower-case suffixes, with the dot (compare with ``Path.suffix.lower()``): what ingest and
# scoring take for a video. Animated GIF and WebP are videos too.
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts",
        ".mts", ".m2ts", ".y4m", ".flv", ".f4v", ".wmv", ".asf", ".3gp", ".3g2", ".ogv", ".vob",
        ".mxf", ".dv", ".nut", ".ivf", ".h264", ".264", ".h265", ".265", ".hevc", ".gif", ".webp",
    }
)

__all__ = [
    "DecodedVideo",
    "NoVideoStream",
    "VIDEO_EXTENSIONS",
    "VideoCorrupt",
    "VideoEmpty",
    "VideoError",
    "VideoInfo",
    "VideoNotFound",
    "iter_frames",
    "key_frame_times",
    "probe",
    "failure_reason",
    "read_video",
]
