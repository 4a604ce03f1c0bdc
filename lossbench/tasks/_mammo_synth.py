"""A generator of SYNTHETIC mammogram-like patches: power-law "anatomical noise" with masses and calcifications.

Nothing here comes from a patient. The generator imitates three facts about mammograms that matter for
a detection task, so that a small CNN has something honest to learn:

1. **Background.** Breast tissue seen in a mammogram behaves like "anatomical noise" whose power spectrum
   falls off as a power law, ``P(f) ~ 1 / f**beta`` with ``beta`` about 3 (Burgess, Jacobson & Judy
   2001, "Human observer detection experiments with mammograms and power-law noise", Med. Phys. 28(4)).
   :func:`power_law_noise` makes it by filtering white noise in the Fourier domain. Each patch is cut
   from a field twice its side, so it does not wrap around at its edges (no mammogram is periodic), and
   is then scaled to zero mean and unit standard deviation, so a lesion's ``contrast`` is measured in
   background standard deviations. A little white "quantum" noise is added on top.
2. **Masses.** Soft bright blobs whose radius wobbles with the angle (an irregular margin) and, for about
   half of them, thin bright spicules radiating outwards (a spiculated mass): :func:`mass_profiles`.
3. **Microcalcification clusters.** A few tiny bright specks within a small region:
   :func:`calcification_profiles`.

A lesion's *profile* is its shape with peak about 1; the image adds ``contrast * profile``. Its *mask*
is where the profile reaches ``MASK_LEVEL`` (a quarter of its peak): the pixels where the lesion is
visible, used for the per-area labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MASK_LEVEL = 0.25  # a pixel belongs to a lesion where its profile reaches this fraction of the peak
CALCIFICATION_GAIN = 2.5  # specks are this much brighter than a mass at the same contrast (calcium vs soft tissue)


def power_law_noise(n: int, size: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` periodic ``size x size`` fields of Gaussian noise with power spectrum ``1 / f**beta``.

    Steps: (1) draw white Gaussian noise, whose power spectrum is flat; (2) multiply its Fourier
    transform by the amplitude filter ``f**(-beta / 2)`` (power is amplitude squared), with the
    zero-frequency term set to 0 so each field has mean 0; (3) transform back and scale each field
    to unit standard deviation.

    .. math:: P(f) \\propto f^{-\\beta}, \\qquad f = \\sqrt{f_x^2 + f_y^2} \\text{ in cycles per pixel}

    Returns float32 ``(n, size, size)``.

    >>> fields = power_law_noise(3, 16, beta=3.0, rng=np.random.default_rng(0))
    >>> fields.shape, fields.dtype
    ((3, 16, 16), dtype('float32'))
    >>> bool(np.allclose(fields.mean(axis=(1, 2)), 0, atol=1e-5) and np.allclose(fields.std(axis=(1, 2)), 1))
    True
    """
    return _unit_std(_filtered_noise(n, size, beta, rng))


def _filtered_noise(n: int, size: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Steps 1 and 2 of :func:`power_law_noise`: white noise through the ``f**(-beta / 2)`` filter."""
    # numpy's FFT, not torch's: torch's rounding depends on its thread count, and the same seed must give
    # the same patches on every machine and with any --threads
    white = rng.standard_normal((n, size, size), dtype=np.float32)  # (n, size, size)
    fy = np.fft.fftfreq(size)[:, None]  # (size, 1) cycles per pixel
    fx = np.fft.rfftfreq(size)[None, :]  # (1, size // 2 + 1): the real FFT keeps half the plane
    f = np.sqrt(fx**2 + fy**2)
    amplitude = np.where(f > 0, np.maximum(f, 1e-12) ** (-beta / 2), 0.0).astype(np.float32)
    return np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=(size, size)).astype(np.float32)  # (n, size, size)


NOISE_CHUNK_BYTES = 64 * 2**20
"""How much noise field :func:`generate_patches` makes at once."""


def _cropped_noise(n: int, size: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Power-law noise on ``2 size`` fields, each cropped to its top-left ``size x size`` and scaled to unit std.

    Made a few fields at a time (about 64 MB of them): a field is four patches' worth of memory and its
    Fourier transform more, so all at once took 24 times the patches' own size. The random stream is drawn
    in the same order, so the fields are the same as all at once, bit for bit (tests).
    """
    out = np.empty((n, size, size), dtype=np.float32)
    chunk = max(1, NOISE_CHUNK_BYTES // (4 * (2 * size) ** 2))  # float32 fields of 2 size x 2 size
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        out[start:stop] = _unit_std(_filtered_noise(stop - start, 2 * size, beta, rng)[:, :size, :size])
    return out


def _unit_std(fields: np.ndarray) -> np.ndarray:
    """Each field shifted to mean 0 and scaled to standard deviation 1."""
    fields = fields - fields.mean(axis=(1, 2), keepdims=True)
    return fields / fields.std(axis=(1, 2), keepdims=True)


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates of the pixel centres, each ``(1, size, size)``."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return rows[None], cols[None]


def mass_profiles(
    centres: np.ndarray,
    radii: np.ndarray,
    size: int,
    rng: np.random.Generator,
    spiculated: np.ndarray | None = None,
) -> np.ndarray:
    """Profiles (peak about 1) of soft masses with irregular margins and, where ``spiculated``, spicules.

    ``centres`` is ``(m, 2)`` (row, column) in pixels, ``radii`` is ``(m,)`` in pixels. For a pixel at
    distance ``d`` and angle ``theta`` from the centre:

    1. the margin: ``r(theta) = r0 * (1 + sum_k a_k cos(k theta + phi_k))``, k = 2..5, a_k up to 0.12;
    2. the blob: ``sigmoid((r(theta) - d) / w)`` with a soft edge ``w = 0.15 r0 + 0.3``;
    3. each spicule j (5 to 10 of them, at angle ``theta_j``, length ``L_j`` of 2 to 3.5 radii) is a
       thin ridge ``0.8 (1 - t / L_j) exp(-(s / 0.7)**2)`` along its axis, with ``t`` the distance along
       it and ``s`` the distance across it;
    4. the profile is the largest of the blob and the spicules at each pixel.

    Returns float32 ``(m, size, size)``.

    >>> p = mass_profiles(np.array([[16.0, 16.0]]), np.array([4.0]), 32, np.random.default_rng(0))
    >>> p.shape, 0.95 < float(p.max()) <= 1.0, float(p[0, 0, 0]) < 0.01
    ((1, 32, 32), True, True)
    """
    m = len(centres)
    if spiculated is None:
        spiculated = np.zeros(m, dtype=bool)
    rows, cols = _pixel_grid(size)
    dy = rows - centres[:, 0, None, None].astype(np.float32)  # (m, size, size)
    dx = cols - centres[:, 1, None, None].astype(np.float32)
    d = np.sqrt(dy**2 + dx**2)
    theta = np.arctan2(dy, dx)
    r0 = radii.astype(np.float32)[:, None, None]  # (m, 1, 1)

    # 1. the irregular margin: a random low-order Fourier series of the angle
    orders = np.arange(2, 6, dtype=np.float32)  # (4,)
    amps = rng.uniform(0.0, 0.12, size=(m, 4)).astype(np.float32)
    phases = rng.uniform(0.0, 2 * np.pi, size=(m, 4)).astype(np.float32)
    wobble = np.zeros_like(d)
    for k in range(4):
        wobble += amps[:, k, None, None] * np.cos(orders[k] * theta + phases[:, k, None, None])
    margin = r0 * (1 + wobble)

    # 2. the soft blob
    softness = 0.15 * r0 + 0.3
    profile = 1 / (1 + np.exp(-(margin - d) / softness))

    # 3. the spicules (drawn for every mass, kept only where spiculated, so the draws do not depend on it)
    max_spicules = 10
    n_spicules = rng.integers(5, max_spicules + 1, size=m)
    angles = rng.uniform(0.0, 2 * np.pi, size=(m, max_spicules)).astype(np.float32)
    lengths = r0[:, :, 0] * rng.uniform(2.0, 3.5, size=(m, max_spicules)).astype(np.float32)  # (m, 10)
    for j in range(max_spicules):
        active = (spiculated & (j < n_spicules)).astype(np.float32)[:, None, None]
        ux = np.cos(angles[:, j])[:, None, None]
        uy = np.sin(angles[:, j])[:, None, None]
        along = dx * ux + dy * uy  # t: distance along the spicule's axis
        across = np.abs(dx * uy - dy * ux)  # s: distance from the axis
        length = lengths[:, j, None, None]
        ridge = 0.8 * np.clip(1 - along / length, 0, 1) * (along >= 0) * np.exp(-((across / 0.7) ** 2))
        # 4. the profile is the brightest of the blob and the spicules
        profile = np.maximum(profile, active * ridge)
    return profile.astype(np.float32)


def calcification_profiles(
    centres: np.ndarray, radii: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Profiles (peak about 1) of microcalcification clusters: 3 to 8 tiny bright specks each.

    ``centres`` is ``(m, 2)`` (row, column) and ``radii`` ``(m,)`` the cluster radii in pixels. Each
    speck is a Gaussian dot ``a exp(-d**2 / (2 sigma**2))`` with ``sigma`` 0.5 to 0.8 pixel and peak
    ``a`` 0.7 to 1, placed uniformly at random in the disc of the cluster; the profile is the brightest
    speck at each pixel.

    Returns float32 ``(m, size, size)``.

    >>> p = calcification_profiles(np.array([[8.0, 8.0]]), np.array([2.0]), 16, np.random.default_rng(0))
    >>> p.shape, 0.5 < float(p.max()) <= 1.0, int((p > 0.25).sum()) < 40
    ((1, 16, 16), True, True)
    """
    m = len(centres)
    max_specks = 8
    n_specks = rng.integers(3, max_specks + 1, size=m)
    # uniform in the disc: radius ~ sqrt(uniform) times the cluster radius
    rho = radii[:, None] * np.sqrt(rng.uniform(0.0, 1.0, size=(m, max_specks)))
    phi = rng.uniform(0.0, 2 * np.pi, size=(m, max_specks))
    speck_rows = (centres[:, 0, None] + rho * np.sin(phi)).astype(np.float32)  # (m, 8)
    speck_cols = (centres[:, 1, None] + rho * np.cos(phi)).astype(np.float32)
    sigma = rng.uniform(0.5, 0.8, size=(m, max_specks)).astype(np.float32)
    peak = rng.uniform(0.7, 1.0, size=(m, max_specks)).astype(np.float32)

    rows, cols = _pixel_grid(size)
    profile = np.zeros((m, size, size), dtype=np.float32)
    for j in range(max_specks):
        active = (j < n_specks).astype(np.float32)[:, None, None]
        d2 = (rows - speck_rows[:, j, None, None]) ** 2 + (cols - speck_cols[:, j, None, None]) ** 2
        speck = peak[:, j, None, None] * np.exp(-d2 / (2 * sigma[:, j, None, None] ** 2))
        profile = np.maximum(profile, active * speck)
    return profile


@dataclass(frozen=True)
class Patches:
    """Generated patches with what is known about each one."""

    images: np.ndarray  # (n, size, size) float32: background + quantum noise + contrast * lesion
    masks: np.ndarray  # (n, size, size) bool: pixels where the lesion is visible (profile >= MASK_LEVEL)
    centres: np.ndarray  # (n, size, size) bool: the lesion's centre pixel, always one of its mask's (none if normal)
    lesion: np.ndarray  # (n,) str: "none", "mass", "spiculated mass" or "calcifications"


def generate_patches(
    n: int,
    size: int = 32,
    *,
    prevalence: float = 0.17,
    contrast: float = 2.5,
    beta: float = 3.0,
    quantum_noise: float = 0.1,
    mass_fraction: float = 0.5,
    seed: int = 0,
) -> Patches:
    """``n`` synthetic mammogram-like patches, ``round(prevalence * n)`` of them holding one lesion.

    Steps: (1) choose which patches are abnormal (exactly ``round(prevalence * n)``, at random places
    in the sequence) and, among them, masses (``mass_fraction``, half of them spiculated) and
    calcification clusters; (2) background: power-law noise on a ``2 size`` field, the top-left
    ``size x size`` crop scaled to mean 0 and standard deviation 1, plus white noise of standard
    deviation ``quantum_noise``; (3) lesions with centres uniform in the middle 80% of the patch (a
    lesion may be cut by the edge), mass radii 8% to 15% of the side, cluster radii 6% to 12% of the
    side (at least 1.5 pixels); (4) ``image = background + contrast * gain * profile``, with gain
    ``CALCIFICATION_GAIN`` (2.5) for calcifications and 1 for masses.

    Deterministic in ``seed``: the same arguments give the same arrays.

    >>> p = generate_patches(100, 32, prevalence=0.2, seed=1)
    >>> p.images.shape, p.images.dtype, int((p.lesion != "none").sum()), int(p.centres.sum())
    ((100, 32, 32), dtype('float32'), 20, 20)
    >>> bool(p.masks[p.lesion == "none"].any())
    False
    """
    rng = np.random.default_rng(seed)
    # 1. which patches are abnormal, and with what
    n_abnormal = int(round(prevalence * n))
    abnormal = np.zeros(n, dtype=bool)
    abnormal[rng.permutation(n)[:n_abnormal]] = True
    is_mass = rng.uniform(size=n) < mass_fraction
    is_spiculated = rng.uniform(size=n) < 0.5
    lesion = np.full(n, "none", dtype=object)
    lesion[abnormal & is_mass] = "mass"
    lesion[abnormal & is_mass & is_spiculated] = "spiculated mass"
    lesion[abnormal & ~is_mass] = "calcifications"

    # 2. background: anatomical (power-law) noise cut from a larger field, plus quantum (white) noise
    background = _cropped_noise(n, size, beta, rng)  # (n, size, size)
    images = background + quantum_noise * rng.standard_normal((n, size, size), dtype=np.float32)

    # 3. one lesion per abnormal patch (parameters drawn for every patch, so each draw keeps its meaning)
    centre = rng.uniform(0.1 * size, 0.9 * size, size=(n, 2))
    mass_radius = rng.uniform(0.08, 0.15, size=n) * size
    cluster_radius = np.maximum(rng.uniform(0.06, 0.12, size=n) * size, 1.5)
    profiles = np.zeros((n, size, size), dtype=np.float32)
    masses = abnormal & is_mass
    profiles[masses] = mass_profiles(centre[masses], mass_radius[masses], size, rng, is_spiculated[masses])
    calcs = abnormal & ~is_mass
    profiles[calcs] = calcification_profiles(centre[calcs], cluster_radius[calcs], size, rng)

    # 4. the image and what is known about it
    gain = np.where(calcs, CALCIFICATION_GAIN, 1.0).astype(np.float32)[:, None, None]
    images = (images + contrast * gain * profiles).astype(np.float32)
    masks = profiles >= MASK_LEVEL
    # the centre pixel; where it falls between the specks of a cluster, the cluster's brightest pixel instead
    idx = np.flatnonzero(abnormal)
    rows, cols = np.floor(centre[idx]).astype(int).T
    brightest = profiles[idx].reshape(len(idx), size * size).argmax(axis=1)
    off = ~masks[idx, rows, cols]
    rows[off], cols[off] = np.divmod(brightest[off], size)
    centres = np.zeros((n, size, size), dtype=bool)
    centres[idx, rows, cols] = True
    return Patches(images=images, masks=masks, centres=centres, lesion=lesion.astype(str))
