;; slow_echo.wat: a dataflow operator that sleeps 50 ms (WASI poll_oneoff on
;; the monotonic clock), then copies stdin to stdout unchanged. Used to make
;; an operator slower than its input so its queue fills up.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  ;; 0: subscription (48 bytes), 64: event (32 bytes), 128: nevents,
  ;; 136: iovec {ptr, len}, 144: nread / nwritten, 65536..: the data (up to 128 KiB).
  (memory (export "memory") 3)
  (func (export "_start")
    (local $n i32)
    (local $total i32)
    ;; subscription: userdata 0, tag 0 (clock), clock id 1 (monotonic), timeout 50 ms, relative
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 50000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    ;; read stdin until EOF
    (block $eof
      (loop $more
        (i32.store (i32.const 136) (i32.add (i32.const 65536) (local.get $total)))
        (i32.store (i32.const 140) (i32.sub (i32.const 131072) (local.get $total)))
        (br_if $eof (call $fd_read (i32.const 0) (i32.const 136) (i32.const 1) (i32.const 144)))
        (local.set $n (i32.load (i32.const 144)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (br_if $eof (i32.ge_u (local.get $total) (i32.const 131072)))
        (br $more)))
    (i32.store (i32.const 136) (i32.const 65536))
    (i32.store (i32.const 140) (local.get $total))
    (drop (call $fd_write (i32.const 1) (i32.const 136) (i32.const 1) (i32.const 144)))))
