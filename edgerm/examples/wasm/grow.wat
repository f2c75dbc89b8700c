;; grow.wat: a WASI command that asks for 4 MiB more linear memory. If the
;; agent's memory cap refuses it, it says so on stderr and exits with 12
;; (as a C program whose malloc returned NULL would); otherwise it exits 0.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "memory allocation failed\n")
  (func (export "_start")
    ;; 64 pages of 64 KiB = 4 MiB; memory.grow answers -1 when refused.
    (if (i32.lt_s (memory.grow (i32.const 64)) (i32.const 0))
      (then
        (i32.store (i32.const 32) (i32.const 0))
        (i32.store (i32.const 36) (i32.const 25))
        (drop (call $fd_write (i32.const 2) (i32.const 32) (i32.const 1) (i32.const 40)))
        (call $proc_exit (i32.const 12))))))
