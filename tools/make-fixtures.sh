#!/usr/bin/env bash
# Regenerates the audio-io test fixtures in crates/audio-io/tests/fixtures/ from one synthetic
# source signal. Run once by hand; the outputs are committed. Needs ffmpeg and opus-tools
# (installed with apt-get when missing). nomusic itself never runs ffmpeg.
#
# The source is 0.5 s of 44.1 kHz stereo 16-bit PCM with distinct channels, so tests can tell a
# swapped pair from a correct one:
#   left  = linear chirp 200 Hz -> 4 kHz, amplitude 0.5 (its autocorrelation has one sharp peak,
#           which the alignment tests rely on)
#   right = 440 Hz tone, amplitude 0.4
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/crates/audio-io/tests/fixtures"
mkdir -p "$out"

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v opusenc >/dev/null || need+=(opus-tools)
if ((${#need[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

ff() { ffmpeg -hide_banner -loglevel error -y -bitexact "$@"; }
cd "$out"

dur=0.5
chirp="0.5*sin(2*PI*(200*t+(4000-200)*t*t/(2*$dur)))"
tone="0.4*sin(2*PI*440*t)"
ff -f lavfi -i "aevalsrc=exprs=${chirp}|${tone}:s=44100:d=${dur}" -c:a pcm_s16le source.wav

# Lossless.
ff -i source.wav -c:a flac flac.flac
# AIFF is big (uncompressed), so it holds only the first 0.25 s; tests compare against that prefix.
ff -i source.wav -t 0.25 -c:a pcm_s16be aiff.aiff

# Lossy, audio only.
ff -i source.wav -c:a libmp3lame -b:a 96k mp3.mp3
ff -i source.wav -c:a libvorbis -q:a 3 vorbis.ogg
ff -i source.wav -c:a aac -b:a 96k aac.m4a
# Opus: opusenc, as most .opus files in the wild; it resamples to 48 kHz and writes pre-skip.
opusenc --quiet --bitrate 64 source.wav opus-stereo.opus
# Mono Ogg Opus from ffmpeg/libopus, fed 48 kHz so no encoder-side resampler delay muddies the
# alignment test.
ff -i source.wav -ac 1 -ar 48000 -c:a libopus -b:a 48k opus-mono.opus
# Audio-only WebM with Opus, the way yt-dlp saves YouTube audio.
ff -i source.wav -ar 48000 -c:a libopus -b:a 64k -f webm opus.webm

# Video files: a tiny video track first, then the audio track (the decoder must skip the video).
vid="color=c=blue:s=32x32:r=10:d=${dur}"
ff -f lavfi -i "$vid" -i source.wav -map 0:v -map 1:a -c:v libx264 -preset ultrafast -pix_fmt yuv420p \
   -c:a aac -b:a 96k video-aac.mp4
ff -f lavfi -i "$vid" -i source.wav -map 0:v -map 1:a -c:v libx264 -preset ultrafast -pix_fmt yuv420p \
   -c:a libvorbis -q:a 3 video-vorbis.mkv
ff -f lavfi -i "$vid" -i source.wav -map 0:v -map 1:a -c:v libvpx -b:v 50k \
   -ar 48000 -c:a libopus -b:a 64k video-opus.webm

# A video with no audio track at all.
ff -f lavfi -i "$vid" -c:v libx264 -preset ultrafast -pix_fmt yuv420p video-only.mkv

# Broken inputs. "corrupt": a FLAC file whose first and last 8 kB are intact and whose middle is
# replaced by garbage. "truncated": the first 60 % of a valid file.
# "notaudio": text with an audio extension.
size=$(stat -c %s flac.flac)
head -c 8000 flac.flac > corrupt.flac
head -c $((size - 16000)) /dev/urandom >> corrupt.flac
tail -c 8000 flac.flac >> corrupt.flac
size=$(stat -c %s flac.flac)
head -c $((size * 6 / 10)) flac.flac > truncated.flac
size=$(stat -c %s mp3.mp3)
head -c $((size * 6 / 10)) mp3.mp3 > truncated.mp3
printf 'This is a text file, not audio.\n%.0s' {1..20} > notaudio.wav

ls -l "$out"
du -sh "$out"
