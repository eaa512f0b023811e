# Sourced by the bench scripts: their --page-size (2M or 1G) among the arguments, and the
# guest sizes it allows. Sets page_size, per_g (pages a GiB), page_m (MiB a page),
# small_pages (the small guest: 256 MiB, or one 1 GiB page) and headroom (spare pages
# beside the pool); `size_for NAME MOST_WANTED_DIVISOR` sets size_g with 1 GiB pages.
bin=${PREZERO_BIN:-$PWD/.build/release}
page_size=2M
next=
for a in "$@"; do
    [ -n "$next" ] && { page_size=$a; next=; continue; }
    case "$a" in --page-size) next=1 ;; --page-size=*) page_size=${a#*=} ;; esac
done
case "$page_size" in
    2M|2m) page_size=2M; per_g=512; page_m=2; small_pages=128; headroom=32 ;;
    1G|1g) page_size=1G; per_g=1; page_m=1024; small_pages=1; headroom=0 ;;
    *) echo "--page-size must be 2M or 1G" >&2; exit 2 ;;
esac

# size_for NAME DIVISOR: with 1 GiB pages, the largest guest the host can reserve now
# (as many pages as it gives, less the small guest's, over DIVISOR); else 8 GiB.
size_for() {
    if [ "$page_size" = 1G ]; then
        local most
        most=$("$bin/prezero" lab hugepages most-1g 64)
        size_g=$(( (most - small_pages) / $2 ))
        echo "$1: the host can reserve $most x 1 GiB pages now: a ${size_g} GiB guest and a 1 GiB one"
        [ "$size_g" -ge 1 ] || { echo "$1: too few 1 GiB pages; free memory or reserve them at boot (hugepagesz=1G hugepages=N)" >&2; exit 1; }
    else
        size_g=8
    fi
}
