import pickle

import numpy as np
import pytest

from tests.media import make_audio, make_clip
from vqa.video import (
    NoVideoStream,
    VideoCorrupt,
    VideoEmpty,
    VideoError,
    VideoNotFound,
    iter_frames,
    key_frame_times,
    probe,
    read_video,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    # 3 s at 10 fps, 64x48
    return make_clip(tmp_path_factory.mktemp("v") / "clip.mp4", frames=30, fps=10)


def test_key_frame_times():
    assert key_frame_times(3.0) == [0.5, 1.5, 2.5]
    assert key_frame_times(3.4) == [0.5, 1.5, 2.5]  # only whole windows
    assert key_frame_times(2.0, rate=2.0) == [0.25, 0.75, 1.25, 1.75]
    assert key_frame_times(0.4) == [0.2]  # shorter than one window: its midpoint
    assert key_frame_times(0.0) == [0.0]
    assert key_frame_times(10.0, rate=0.25) == [2.0, 6.0]
    with pytest.raises(ValueError):
        key_frame_times(1.0, rate=0)


def test_probe(clip):
    info = probe(clip)
    assert (info.codec, info.width, info.height, info.rotation) == ("h264", 64, 48, 0)
    assert info.fps == 10.0 and info.frame_count == 30
    assert info.duration == pytest.approx(3.0, abs=0.05)
    assert info.to_dict()["frame_count"] == 30


def test_read_video_key_frames_match_timestamps(clip):
    v = read_video(clip)
    assert v.key_frames.shape == (3, 48, 64, 3) and v.key_frames.dtype == np.uint8
    assert v.key_times == [0.5, 1.5, 2.5]
    assert v.clips is None
    assert v.info == probe(clip)
    frames = dict(iter_frames(clip))
    assert len(frames) == 30
    times = sorted(frames)
    for k, t in enumerate(v.key_times):
        first = next(ft for ft in times if ft >= t - 1e-6)  # first frame at/after the instant
        np.testing.assert_array_equal(v.key_frames[k], frames[first])


def test_read_video_deterministic(clip):
    a = read_video(clip, clip_len=3)
    b = read_video(clip, clip_len=3)
    np.testing.assert_array_equal(a.key_frames, b.key_frames)
    np.testing.assert_array_equal(a.clips, b.clips)


def test_clips(clip):
    v = read_video(clip, clip_len=4, clip_stride=2)
    assert v.clips.shape == (3, 4, 48, 64, 3)
    frames = [f for _, f in iter_frames(clip)]
    # key 0.5 s is frame 5: its clip is frames 5, 7, 9, 11
    for j, idx in enumerate([5, 7, 9, 11]):
        np.testing.assert_array_equal(v.clips[0, j], frames[idx])
    np.testing.assert_array_equal(v.clips[:, 0], v.key_frames)
    # key 2.5 s is frame 25: 25, 27, 29, then the stream ends -> padded with frame 29
    np.testing.assert_array_equal(v.clips[2, 3], frames[29])
    np.testing.assert_array_equal(v.clips[2, 2], frames[29])


def test_max_key_frames_subset(tmp_path):
    path = make_clip(tmp_path / "long.mp4", frames=60, fps=6)  # 10 s -> 10 instants
    full = read_video(path)
    assert len(full.key_times) == 10
    v = read_video(path, max_key_frames=4)
    assert len(v.key_times) == 4
    idx = [full.key_times.index(t) for t in v.key_times]
    assert idx == sorted(idx) and idx[0] <= 1 and idx[-1] >= 8  # evenly spread
    np.testing.assert_array_equal(v.key_frames, full.key_frames[idx])


def test_max_side_downscale(tmp_path):
    path = make_clip(tmp_path / "big.mp4", frames=10, fps=10, size=(320, 180))
    v = read_video(path, max_side=100)
    assert v.key_frames.shape[1:] == (56, 100, 3)  # 180 * 100/320 = 56.25 -> 56 (even)
    assert (v.info.width, v.info.height) == (320, 180)  # info describes the file
    assert read_video(path, max_side=1000).key_frames.shape[1:] == (180, 320, 3)
    t, f = next(iter_frames(path, max_side=100))
    assert f.shape == (56, 100, 3) and t == 0.0


def test_rotation_display_orientation(tmp_path):
    plain = make_clip(tmp_path / "plain.mp4", frames=20, fps=10, size=(64, 48), seed=3)
    rotated = make_clip(tmp_path / "rot.mp4", frames=20, fps=10, size=(64, 48), seed=3, rotation=90)
    info = probe(rotated)
    if info.rotation == 0:
        pytest.skip("this FFmpeg build did not store the display matrix")
    assert (info.rotation, info.width, info.height) == (90, 48, 64)
    a, b = read_video(plain), read_video(rotated, clip_len=2)
    assert b.key_frames.shape == (2, 64, 48, 3) and b.clips.shape == (2, 2, 64, 48, 3)
    # rotation 90 = turn clockwise to display: stored top-left pixel ends up top-right
    assert np.array_equal(np.rot90(np.array([[1, 2], [3, 4]]), -1), [[3, 1], [4, 2]])
    np.testing.assert_array_equal(b.key_frames, np.rot90(a.key_frames, -1, axes=(1, 2)))
    small = read_video(rotated, max_side=32)
    assert small.key_frames.shape[1:] == (32, 24, 3)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.mp4"
    with pytest.raises(VideoNotFound) as e:
        probe(p)
    assert str(e.value) == f"{p}: no such file"
    with pytest.raises(VideoNotFound):
        read_video(p)
    with pytest.raises(VideoNotFound):
        iter_frames(p)  # reported at call time, not on first next()


def test_zero_byte(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(VideoEmpty) as e:
        read_video(p)
    assert str(e.value).startswith(f"{p}: ")


def test_text_renamed(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 20)
    for fn in (probe, read_video):
        with pytest.raises(VideoCorrupt) as e:
            fn(p)
        assert str(e.value).startswith(f"{p}: ") and "\n" not in str(e.value)


def test_truncated(tmp_path, clip):
    data = clip.read_bytes()
    p = tmp_path / "half.mp4"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises((VideoCorrupt, VideoEmpty)) as e:
        probe(p)
    assert str(e.value).startswith(f"{p}: ")
    with pytest.raises((VideoCorrupt, VideoEmpty)):
        read_video(p)


def test_truncated_with_index_up_front(tmp_path):
    # Matroska keeps its header first: the cut file opens and its first frame decodes, so only
    # the decode pass can see that frames stop at about half the declared duration.
    full = make_clip(tmp_path / "full.mkv", frames=100, fps=10)
    data = full.read_bytes()
    p = tmp_path / "cut.mkv"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoCorrupt, match="truncated") as e:
        read_video(p)
    assert str(e.value).startswith(f"{p}: ")
    with pytest.raises(VideoCorrupt, match="truncated"):
        list(iter_frames(p))
    assert len(read_video(full).key_times) == 10


def test_audio_only(tmp_path):
    p = make_audio(tmp_path / "tone.m4a")
    with pytest.raises(NoVideoStream) as e:
        probe(p)
    assert str(e.value).startswith(f"{p}: no video stream")
    with pytest.raises(NoVideoStream):
        read_video(p)


def test_errors_pickle_and_format(tmp_path):
    e = VideoCorrupt(tmp_path / "x.mp4", "bad\ndata")
    assert isinstance(e, VideoError) and e.path == str(tmp_path / "x.mp4")
    assert str(e) == f"{tmp_path / 'x.mp4'}: bad data"
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is VideoCorrupt and str(back) == str(e) and back.reason == "bad data"


def _stale_avi(path, frames=40):
    """An AVI whose stream counts 1/60 s ticks while frames come every 2 ticks (as AVIs trimmed
    by stream copy from 30 fps sources): the header declares about twice the frames present."""
    from fractions import Fraction

    import av

    from tests.media import clip_frames

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(60), options={"threads": "1", "g": "10"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i, img in enumerate(clip_frames(frames, (64, 48), 0)):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = 2 * i, Fraction(1, 60)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def test_a_stale_header_frame_count_is_not_truncation(tmp_path):
    p = _stale_avi(tmp_path / "trimmed.avi", frames=120)  # 4 s at 30 fps, 239 ticks declared
    info = probe(p)
    assert info.frame_count == 120 and info.fps == pytest.approx(30, rel=0.05)
    assert read_video(p).key_times == [0.5, 1.5, 2.5]  # 3.98 s: three whole windows
    # cut mid-GOP: still a clear, named error
    cut = tmp_path / "cut.avi"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises((VideoCorrupt, VideoEmpty), match="truncated|no decodable"):
        probe(cut)
    with pytest.raises((VideoCorrupt, VideoEmpty)):
        read_video(cut)


def test_damaged_packets_in_the_middle_are_skipped(tmp_path):
    p = make_clip(tmp_path / "ok.mp4", frames=100, fps=10)
    data = bytearray(p.read_bytes())
    for i in range(int(len(data) * 0.4), int(len(data) * 0.6), 97):
        data[i] ^= 0xFF
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    v = read_video(bad, motion_len=4)
    assert v.damaged >= 1 and len(v.key_times) == 10 and v.decoded_frames < 100
    # before the damage the frames are the intact file's (after it, until a key frame, they
    # carry the decoder's concealment)
    np.testing.assert_array_equal(v.key_frames[0], read_video(p).key_frames[0])
    # noise all through: a named error, not a crash
    for i in range(2000, len(data), 31):
        data[i] ^= 0x5A
    bad.write_bytes(bytes(data))
    with pytest.raises(VideoError):
        read_video(bad)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_long_video_costs_its_samples_not_its_length(tmp_path, suffix):
    from tests.media import make_long_clip

    p = make_long_clip(tmp_path / f"two_hours{suffix}")  # 7200 s at 1 fps, key frame every 30 s
    fast = read_video(p, max_key_frames=8, motion_len=8)
    assert fast.key_times[0] == 450.5 and len(fast.key_times) == 8
    assert fast.decoded_frames < 8 * (30 + 8 + 2)  # one GOP and a clip per instant
    slow = read_video(p, max_key_frames=8, motion_len=8, seek=False)
    assert slow.decoded_frames > 6000
    np.testing.assert_array_equal(fast.key_frames, slow.key_frames)
    np.testing.assert_array_equal(fast.motion, slow.motion)


def test_gif_and_webp_animations_are_videos(tmp_path):
    from PIL import Image

    from tests.media import clip_frames

    frames = [Image.fromarray(a) for a in clip_frames(20, (64, 48), 1)]
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(tmp_path / "still.webp", lossless=True)
    for name in ("a.webp", "a.gif"):
        info = probe(tmp_path / name)
        assert (info.width, info.height, info.frame_count) == (64, 48, 20)
        assert info.duration == pytest.approx(2.0, abs=0.01)
        v = read_video(tmp_path / name, motion_len=4)
        assert v.key_times == [0.5, 1.5] and v.motion.shape == (2, 4, 48, 64)
    lossless = read_video(tmp_path / "a.webp")
    np.testing.assert_array_equal(lossless.key_frames[0], np.asarray(frames[5]))  # frame at 0.5 s
    still = read_video(tmp_path / "still.webp", motion_len=4)
    assert still.key_times == [0.0] and still.key_frames.shape == (1, 48, 64, 3)
