;; hello.wat: a WASI command that prints "hello from edgerm" and exits 0.
;; Run as an edgerm wasm task; its stdout lands in the task's work dir.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; The text, then an iovec {ptr, len} at offset 32.
  (data (i32.const 0) "hello from edgerm\n")
  (func (export "_start")
    (i32.store (i32.const 32) (i32.const 0))
    (i32.store (i32.const 36) (i32.const 18))
    ;; fd 1 (stdout), one iovec at 32, bytes written stored at 40.
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))))
