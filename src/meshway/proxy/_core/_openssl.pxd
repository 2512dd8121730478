"""The part of OpenSSL's C API `_tlssock.pyx` drives (libssl/libcrypto 3.x, Debian's libssl-dev)."""

cdef extern from "openssl/ssl.h" nogil:
    ctypedef struct SSL
    ctypedef struct SSL_CTX
    ctypedef struct X509
    SSL *SSL_new(SSL_CTX *ctx)
    void SSL_free(SSL *s)
    int SSL_set_fd(SSL *s, int fd)
    void SSL_set_accept_state(SSL *s)
    int SSL_do_handshake(SSL *s)
    int SSL_is_init_finished(const SSL *s)
    int SSL_read(SSL *s, void *buf, int num)
    int SSL_write(SSL *s, const void *buf, int num)
    int SSL_shutdown(SSL *s)
    int SSL_get_error(const SSL *s, int ret)
    int SSL_has_pending(const SSL *s)
    long SSL_set_mode(SSL *s, long mode)
    unsigned long SSL_set_options(SSL *s, unsigned long op)
    void SSL_set_read_ahead(SSL *s, int yes)
    const char *SSL_get_servername(const SSL *s, int type)
    SSL_CTX *SSL_set_SSL_CTX(SSL *s, SSL_CTX *ctx)
    void SSL_get0_alpn_selected(const SSL *s, const unsigned char **data, unsigned int *len)
    const char *SSL_get_version(const SSL *s)
    X509 *SSL_get1_peer_certificate(const SSL *s)
    int i2d_X509(X509 *x, unsigned char **out)
    void X509_free(X509 *x)
    int SSL_set_ex_data(SSL *s, int idx, void *data)
    void *SSL_get_ex_data(const SSL *s, int idx)
    unsigned long SSL_CTX_get_options(const SSL_CTX *ctx)
    long SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, int (*cb)(SSL *, int *, void *))
    enum:
        SSL_ERROR_NONE
        SSL_ERROR_SSL
        SSL_ERROR_WANT_READ
        SSL_ERROR_WANT_WRITE
        SSL_ERROR_SYSCALL
        SSL_ERROR_ZERO_RETURN
        SSL_MODE_ENABLE_PARTIAL_WRITE
        SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
        SSL_OP_ENABLE_KTLS
        SSL_OP_IGNORE_UNEXPECTED_EOF
        TLSEXT_NAMETYPE_host_name
        SSL_TLSEXT_ERR_OK
        SSL_TLSEXT_ERR_ALERT_FATAL

cdef extern from "openssl/err.h" nogil:
    void ERR_clear_error()
    unsigned long ERR_peek_error()
    unsigned long ERR_peek_last_error()
    void ERR_error_string_n(unsigned long e, char *buf, size_t len)
