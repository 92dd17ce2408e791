"""The plain FFT formulation of DiffStride (docs/layers.md), written
independently of the library with torch.fft and explicit masks: what the
Python tests compare the ops and the package against."""
import torch


def plain_diffstride(x, s_h, s_w, R=4.0, cropping=True):
    """docs/layers.md, DiffStride steps 2-6 after the floor, with torch.fft and explicit masks."""
    H, W = x.shape[-2:]
    t_h, t_w = max(H / s_h, 2.0), max(W / s_w, 2.0)
    ramp = lambda a, p: min(max((R + a - p) / R, 0.0), 1.0)
    # FFT-order rows: frequency f >= 0 at position f; negative frequency -f at
    # f - 1 for even H, at f for odd H.
    row_pos = [k if k < (H + 1) // 2 else (H - 1 - k if H % 2 == 0 else H - k) for k in range(H)]
    m_h = torch.tensor([ramp(t_h / 2, p) for p in row_pos], dtype=torch.float64)
    m_w = torch.tensor([ramp(t_w / 2 + 1, p) for p in range(W // 2 + 1)], dtype=torch.float64)
    spectrum = torch.fft.rfft2(x.double()) * m_h[:, None] * m_w[None, :]
    if cropping:
        spectrum = spectrum[..., m_h > 0, :][..., m_w > 0]
    return torch.fft.irfft2(spectrum).to(x.dtype)


def floor(size, R=4.0):
    return size / (size - R)
