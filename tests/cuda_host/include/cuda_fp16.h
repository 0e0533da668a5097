// Stand-in for CUDA's cuda_fp16.h: the emulator's 16-bit float types are in ../cuda_host.h, included first.
#pragma once
