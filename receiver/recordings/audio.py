"""What a downloaded file is: the audio type its first bytes announce, or not audio at all (an
error page served with 200, an expired link's XML)."""

from __future__ import annotations

# Magic numbers of the audio formats a call platform produces, and the type each is stored with.
_AUDIO_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"#!AMR", "audio/amr"),
    (0, b"\x1a\x45\xdf\xa3", "audio/webm"),
    (4, b"ftyp", "audio/mp4"),
    (0, b".snd", "audio/basic"),
)


def sniff_audio(head: bytes) -> str | None:
    """The audio type the first bytes announce, or None when they are not audio."""
    for offset, magic, content_type in _AUDIO_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/mpeg"  # an MPEG audio frame without an ID3 tag
    return None
