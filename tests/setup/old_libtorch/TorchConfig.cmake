# A stand-in for LibTorch 1.13's package (Debian 12's libtorch-dev): only its
# version, which the build must refuse before it uses anything else of it.
set(TORCH_LIBRARIES "")
