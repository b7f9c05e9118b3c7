/* A stand-in for libcublas.so.12 in tests: only what `ringtree doctor` reads
 * (cublasGetProperty: MAJOR_VERSION 0, MINOR_VERSION 1, PATCH_LEVEL 2). */
int cublasGetProperty(int type, int* value) {
  if (!value) return 7; /* CUBLAS_STATUS_INVALID_VALUE */
  *value = type == 0 ? 12 : type == 1 ? 4 : type == 2 ? 5 : -1;
  return type >= 0 && type <= 2 ? 0 : 7;
}
