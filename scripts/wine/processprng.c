/*
 * bcryptprimitives.dll for Wine 8.0, which lacks it: Rust's standard
 * library (1.78 and later) imports ProcessPrng from it for its random
 * seeds (HashMap), and a Windows program that cannot load it does not
 * start (status 53). Built with mingw by scripts/wine-runner.sh and placed
 * in the Wine prefix's system32; real Windows has its own.
 *
 * ProcessPrng fills the buffer from the system's generator (RtlGenRandom,
 * advapi32's SystemFunction036) and, as documented, always returns TRUE:
 * a failure ends the process rather than hand out predictable bytes.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            ExitProcess(0xC0000001); /* STATUS_UNSUCCESSFUL */
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
