"""fpcli.video: exact, fast, robust frame sampling from video files.

    from fpcli.video import sample_frames
    clip = sample_frames("clip.mp4", num_frames=64)   # VideoClip, frames uint8 [T, H, W, 3]
"""

from fpcli.video.clip import VideoClip
from fpcli.video.errors import VideoError
from fpcli.video.files import VIDEO_EXTENSIONS, list_videos
from fpcli.video.indices import INDEX_RULES
from fpcli.video.sampling import sample_frames

__all__ = ["INDEX_RULES", "VIDEO_EXTENSIONS", "VideoClip", "VideoError", "list_videos", "sample_frames"]
