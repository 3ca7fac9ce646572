/* A tiny Windows TCP client for the wine e2e tests (issue 10): opens N connections to
 * HOST:PORT, writes one byte on each (wine names a process as a socket's owner only once the
 * process has used it), prints "ready N", then holds them until stdin closes.
 *   x86_64-w64-mingw32-gcc -O2 -o client.exe client.c -lws2_32
 *   client.exe 127.0.0.1 7070 20
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    WSADATA wsa;
    struct sockaddr_in to;
    int n, i, opened = 0;
    char c;
    if (argc != 4) {
        fprintf(stderr, "usage: client.exe IPV4 PORT COUNT\n");
        return 2;
    }
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        fprintf(stderr, "WSAStartup failed\n");
        return 1;
    }
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((unsigned short)atoi(argv[2]));
    to.sin_addr.s_addr = inet_addr(argv[1]);
    n = atoi(argv[3]);
    for (i = 0; i < n; i++) {
        SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
        if (s == INVALID_SOCKET)
            break;
        if (connect(s, (struct sockaddr *)&to, sizeof to) != 0) {
            fprintf(stderr, "connect failed: %d\n", WSAGetLastError());
            closesocket(s);
            break;
        }
        send(s, "x", 1, 0);
        opened++;
    }
    printf("ready %d\n", opened);
    fflush(stdout);
    while (fread(&c, 1, 1, stdin) == 1) {
    }
    return opened == n ? 0 : 1;
}
