"""Convert public speech data into witnp's three shipped speech datasets (run once; see README.md here).

    japanese_vowels.npz  speaker recognition: 9 speakers, 12 LPC cepstra per frame, 7..29 frames
                         (variable length: lengths_*), from the UCI Japanese Vowels set in sktime's wheel
    arctic_denoise.npz   noise suppression: noisy log band energies -> a gain per band and frame (regress),
                         from CMU ARCTIC utterance arctic_a0007 (pysptk's source package) mixed with noise
    arctic_vad.npz       voice activity: noisy log band energies -> speech / non-speech per frame (frames),
                         the same utterance between stretches of noise alone

Usage (the sources are checked against their sha256):
    pip download --no-deps sktime==1.2.0      # sktime-1.2.0-py3-none-any.whl
    curl -LO https://files.pythonhosted.org/packages/56/70/0f42ddd75cf4fe1f15dd4165576b3ca9563ef98862ea918a953a5842789d/pysptk-1.0.1.tar.gz
    python data/make_speech.py sktime-1.2.0-py3-none-any.whl pysptk-1.0.1.tar.gz
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import wave
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SKTIME_SHA = "dbffc6731d2d683b668dceb5e2bbc5804bebc8446b4c580803a281684d90e4ae"  # sktime-1.2.0-py3-none-any.whl
PYSPTK_SHA = "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f"
JV = "sktime/datasets/data/JapaneseVowels/JapaneseVowels_{}.ts"
WAV = "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav"

N_FFT, HOP, BANDS, T = 512, 256, 16, 25  # 32 ms windows, 16 ms hop at 16 kHz; 16 bands; 25-frame examples
SNRS = (0, 5, 10, 15, 20)
NOISES = ("white", "pink")
SEED = 20261207


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def japanese_vowels(wheel):
    """x (N, 29, 12) float32 zero-padded, lengths (N,), y 0..8 (speaker), train 270 / test 370 as published."""
    out = {}
    with zipfile.ZipFile(wheel) as z:
        for split in ("TRAIN", "TEST"):
            xs, ys = [], []
            for line in z.read(JV.format(split)).decode().splitlines():
                if not line or line[0] in "#@":
                    continue
                *dims, label = line.split(":")
                series = np.array([[float(v) for v in d.split(",")] for d in dims], np.float32).T  # (L, 12)
                xs.append(series)
                ys.append(int(label) - 1)
            n, L = len(xs), max(len(s) for s in xs)
            x = np.zeros((n, 29, 12), np.float32)
            for i, s in enumerate(xs):
                x[i, :len(s)] = s
            key = "train" if split == "TRAIN" else "test"
            out["x_" + key], out["y_" + key] = x, np.array(ys, np.int64)
            out["lengths_" + key] = np.array([len(s) for s in xs], np.int64)
            assert L <= 29
    return out


def read_wav(sdist):
    with tarfile.open(sdist) as t:
        data = t.extractfile(WAV).read()
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768.0
    return pcm


def noise(kind, n, rng):
    w = rng.standard_normal(n)
    if kind == "white":
        return w
    spec = np.fft.rfft(w)  # pink: power falling as 1/f
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    return np.fft.irfft(spec, n)


def band_energies(sig):
    """(frames, BANDS) energies of Hann-windowed frames in bands equally spaced on the mel scale."""
    win = np.hanning(N_FFT)
    frames = np.lib.stride_tricks.sliding_window_view(sig, N_FFT)[::HOP] * win
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, 257)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges_hz = 700 * (10 ** (np.linspace(mel(0), mel(8000), BANDS + 1) / 2595) - 1)
    bins = np.round(edges_hz / 8000 * (N_FFT // 2)).astype(int)
    bins[-1] = N_FFT // 2 + 1
    return np.stack([power[:, bins[b]:max(bins[b + 1], bins[b] + 1)].sum(1) for b in range(BANDS)], 1)


def mix(clean, kind, snr, rng):
    n = noise(kind, len(clean), rng)
    speech_power = np.mean(clean[np.abs(clean) > 0.01 * np.abs(clean).max()] ** 2)
    n *= np.sqrt(speech_power / 10 ** (snr / 10) / np.mean(n ** 2))
    return clean + n, n


def log_feat(e):
    return np.log10(e + 1e-7).astype(np.float32)


def windows(a, start, stop):
    """Non-overlapping T-frame windows of a (frames, ...) between frames start and stop."""
    k = (stop - start) // T
    return np.stack([a[start + i * T:start + (i + 1) * T] for i in range(k)])


def arctic(pcm):
    """Denoising and VAD sets. Speech content splits by time (train: the first 70 % of the frames; test: the
    rest), noise by seed (8 training, 3 test draws per noise type and SNR; VAD: the even ones)."""
    # VAD: noise-only stretches (0.5 s, 1 s, 0.5 s) around two copies of the utterance, so both classes occur
    sil = np.zeros(16000)
    vad_clean = np.concatenate([sil[:8000], pcm, sil, pcm, sil[:8000]])
    den, vad = {}, {}
    for split, seeds in (("train", range(8)), ("test", range(8, 11))):
        dx, dy, vx, vy = [], [], [], []
        for kind in NOISES:
            for snr in SNRS:
                for s in seeds:
                    r = np.random.default_rng([SEED, s, snr, NOISES.index(kind)])
                    noisy, _ = mix(pcm, kind, snr, r)
                    ec, en = band_energies(pcm), band_energies(noisy)
                    gain = np.clip(np.sqrt(ec / np.maximum(en, 1e-12)), 0, 1).astype(np.float32)
                    F = len(en)
                    cut = int(0.7 * F) // T * T
                    lo, hi = (0, cut) if split == "train" else (cut, F)
                    dx.append(windows(log_feat(en), lo, hi))
                    dy.append(windows(gain, lo, hi))
                    if s % 2:  # VAD: every other noise draw (its frames are many)
                        continue
                    vn, _ = mix(vad_clean, kind, snr, r)
                    evc, evn = band_energies(vad_clean), band_energies(vn)
                    frame_e = 10 * np.log10(evc.sum(1) + 1e-12)
                    label = (frame_e > frame_e.max() - 35).astype(np.int64)  # speech: within 35 dB of the peak
                    Fv = len(evn)
                    cutv = int(0.7 * Fv) // T * T
                    lo, hi = (0, cutv) if split == "train" else (cutv, Fv)
                    vx.append(windows(log_feat(evn), lo, hi))
                    vy.append(windows(label, lo, hi))
        den["x_" + split], den["y_" + split] = np.concatenate(dx), np.concatenate(dy)
        vad["x_" + split], vad["y_" + split] = np.concatenate(vx), np.concatenate(vy)
    return den, vad


def main(wheel, sdist):
    for path, want, what in ((wheel, SKTIME_SHA, "sktime-1.2.0-py3-none-any.whl"), (sdist, PYSPTK_SHA,
                                                                                     "pysptk-1.0.1.tar.gz")):
        got = sha256(path)
        if got != want:
            sys.exit(f"{path}: sha256 {got}, expected {want} ({what} from PyPI)")
    jv = japanese_vowels(wheel)
    den, vad = arctic(read_wav(sdist))
    for name, arrays, desc in (
            ("japanese_vowels", jv, "UCI Japanese Vowels (CC BY 4.0): speaker 0..8 from 12 LPC cepstra per frame"),
            ("arctic_denoise", den, "CMU ARCTIC arctic_a0007 + white/pink noise at 0..20 dB SNR: per-band gain"),
            ("arctic_vad", vad, "CMU ARCTIC arctic_a0007 between noise-only stretches: speech per frame")):
        # the arctic features and gains in float16 (1e-3 relative: far below the 8-bit codes they become),
        # to keep the files small; Japanese Vowels as published
        arrays = {k: (v.astype(np.float16) if v.dtype.kind == "f" and name != "japanese_vowels" else v)
                  for k, v in arrays.items()}
        path = os.path.join(HERE, name + ".npz")
        np.savez_compressed(path, description=np.array(desc), **arrays)
        print(f"wrote {path} ({os.path.getsize(path)} bytes): " +
              ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
