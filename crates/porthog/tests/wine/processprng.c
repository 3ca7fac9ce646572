/* A stand-in bcryptprimitives.dll for wine 8, which lacks ProcessPrng: Rust's standard library
 * imports it since 1.78, so every Rust exe exits 53 under wine 8 without it. The one function
 * forwards to advapi32's SystemFunction036 (RtlGenRandom). Test use only (issue 10):
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll processprng.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
