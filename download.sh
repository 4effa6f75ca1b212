#!/usr/bin/env bash
# shellcheck disable=SC2329  # the get_* functions are called as "get_$src"
# Download the public face data sets named by the original C3AE project into dataset/
# and unpack each into the folder that preprocessing/dataset_proc.py reads by default.
# See dataset/README.md for the layouts, labels and licences. Run with --help for usage.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true   # bash >= 4.4

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="$ROOT/dataset"
DOWNLOADS="$DATA/downloads"
ALL_SOURCES=(wiki imdb utk afad asia)
MANUAL=100          # exit status of a source that needs manual steps
KEEP_ARCHIVES=0

IMDB_WIKI_URL="https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/static"
UTK_PAGE="https://susanqq.github.io/UTKFace/"
AFAD_URL="https://github.com/afad-dataset/tarball/raw/master"
AAF_REPO="https://github.com/JingchunCheng/All-Age-Faces-Dataset"
AAF_ZIP_URL="https://www.dropbox.com/s/a0lj1ddd54ns8qy/All-Age-Faces%20Dataset.zip?dl=1"
AAF_BAIDU="https://pan.baidu.com/s/1WtHQsb73rLa-cZpBLi2dtg"
AAF_ZIP_NAME="All-Age-Faces Dataset.zip"

usage() {
    cat <<EOF
Usage: bash download.sh [--keep-archives] [wiki|imdb|utk|afad|asia|all]...
       (name at least one source)

Downloads the public data sets of the original C3AE project into
$DATA
(next to this script, whatever the current directory) and unpacks each into the
folder that 'python preprocessing/dataset_proc.py --source SOURCE' reads by default.
A source whose folder is already there is skipped. Interrupted downloads resume
(partial files end in .part under dataset/downloads/). Needs curl or wget, and tar.

  wiki  WIKI faces only: wiki_crop.tar (about 1 GB) from ETH Zurich (IMDB-WIKI).
          -> dataset/wiki_crop/wiki.mat and dataset/wiki_crop/00..99/*.jpg
  imdb  IMDB faces only: imdb_crop.tar (about 7 GB) from ETH Zurich (IMDB-WIKI).
          -> dataset/imdb_crop/imdb.mat and dataset/imdb_crop/00..99/*.jpg
  utk   UTKFace "Aligned&Cropped Faces" (UTKFace.tar.gz). MANUAL: it is hosted on
        Google Drive behind a confirmation page, so this script cannot fetch it.
        Download it from $UTK_PAGE, save it as
        dataset/UTKFace.tar.gz and run 'bash download.sh utk' again to unpack it,
        or unpack it yourself so that dataset/UTKFace/*.jpg exists.
          -> dataset/UTKFace/AGE_GENDER_RACE_DATE*.jpg
  afad  AFAD-Full from github.com/afad-dataset/tarball, stored there as parts
        AFAD-Full.tar.xzaa, ...xzab, ...; each part is downloaded (and resumed)
        on its own, then the parts are joined and unpacked. Needs xz. Large
        (about 165k images); allow several GB of disk.
          -> dataset/AFAD-Full/AGE/111|112/*.jpg
  asia  All-Age-Faces ($AAF_REPO).
        The GitHub repository holds no images, only links to the zip: this fetches
        it from the Dropbox link published with the data set (needs unzip or
        python3). If that fails, download "$AAF_ZIP_NAME" from the
        repository's Baidu Pan link, put it in dataset/ and run
        'bash download.sh asia' again.
          -> dataset/All-Age-Faces/original images/<ID>A<AGE>.jpg (e.g. 00012A23.jpg)
  all   all of the above.

Options:
  --keep-archives  keep downloaded archives after a successful unpack (default:
                   delete them; archives you put in dataset/ yourself are kept)
  -h, --help       show this help and exit

Exit status: 0 when every requested source is present; 1 when some source failed
or needs manual steps (the others are still processed; see the summary);
2 for a bad argument. Licences (research use only) are in dataset/README.md.
EOF
}

say() { printf '  %s\n' "$*"; }
warn() { printf '  %s\n' "$*" >&2; }
rel() { printf '%s' "${1#"$ROOT"/}"; }

# --- downloading --------------------------------------------------------------------

DL=""
if command -v curl >/dev/null 2>&1; then
    DL=curl
elif command -v wget >/dev/null 2>&1; then
    DL=wget
fi

need_downloader() {
    if [[ -z $DL ]]; then
        warn "error: neither curl nor wget is installed; install one (e.g. 'apt-get install curl') and run again"
        return 1
    fi
}

need_tool() {  # need_tool NAME WHY
    if ! command -v "$1" >/dev/null 2>&1; then
        warn "error: '$1' is not installed ($2)"
        return 1
    fi
}

# fetch URL DEST: download to DEST.part (resuming it if present), then rename to DEST.
fetch() {
    local url=$1 dest=$2 attempt rc
    if [[ -s $dest ]]; then
        say "have $(rel "$dest")"
        return 0
    fi
    need_downloader || return 1
    mkdir -p "$(dirname "$dest")" || return 1
    say "downloading $url"
    say "         -> $(rel "$dest")"
    for attempt in 1 2 3 4 5; do
        if [[ $DL == curl ]]; then
            rc=0
            curl -fL --connect-timeout 30 -C - -o "$dest.part" "$url" || rc=$?
            (( rc != 0 )) || break
            if (( rc == 33 )); then  # the server cannot resume: start this file again
                warn "the server does not support resuming; restarting this file"
                rm -f "$dest.part"
            fi
        else
            wget -c --timeout=30 --tries=1 -O "$dest.part" "$url" && break
        fi
        if (( attempt == 5 )); then
            warn "download failed: $url"
            if [[ -s $dest.part ]]; then
                warn "(what arrived is kept in $(rel "$dest").part; run again to resume)"
            fi
            return 1
        fi
        warn "retrying in 10 s (attempt $((attempt + 1)) of 5)"
        sleep 10
    done
    mv -f "$dest.part" "$dest"
}

# remote_exists URL: 0 if it exists, 1 if the server says it does not (404), 2 on other errors.
remote_exists() {
    local rc=0
    need_downloader || return 2
    if [[ $DL == curl ]]; then
        curl -sfL --connect-timeout 30 -r 0-0 -o /dev/null "$1" || rc=$?
        case $rc in 0) return 0 ;; 22) return 1 ;; *) return 2 ;; esac
    else
        wget -q --timeout=30 --tries=2 --spider "$1" || rc=$?
        case $rc in 0) return 0 ;; 8) return 1 ;; *) return 2 ;; esac
    fi
}

# --- unpacking ----------------------------------------------------------------------

# Every source is unpacked into WORK first and moved into place only when complete,
# so a folder under dataset/ is never half-extracted.
WORK=""

new_work_dir() {
    rm -rf "$WORK"
    mkdir -p "$WORK"
}

is_zip() { [[ $(head -c 2 "$1" 2>/dev/null || true) == PK ]]; }

unpack() {  # unpack ARCHIVE: zip or any tar (GNU tar detects gzip/xz/bzip2 itself)
    local archive=$1
    new_work_dir
    say "unpacking $(rel "$archive") (this can take a while)"
    if is_zip "$archive"; then
        if command -v unzip >/dev/null 2>&1; then
            unzip -q "$archive" -d "$WORK" || unpack_failed "$archive"
        else
            need_tool python3 "needed to unpack a .zip when unzip is missing"
            python3 -m zipfile -e "$archive" "$WORK" || unpack_failed "$archive"
        fi
    else
        tar -xf "$archive" -C "$WORK" || unpack_failed "$archive"
    fi
}

unpack_failed() {
    warn "error: could not unpack $(rel "$1"); if it is damaged, delete it and run again"
    exit 1
}

install_dir() {  # install_dir FOUND TARGET: move an unpacked folder into place
    local found=$1 target=$2
    if [[ -z $found || ! -d $found ]]; then
        warn "error: the archive does not have the expected layout (nothing found for $(rel "$target"))"
        return 1
    fi
    mv "$found" "$target"
    say "ready: $(rel "$target")"
}

drop_archive() {  # delete an archive this script downloaded, unless --keep-archives
    if (( KEEP_ARCHIVES == 0 )); then
        rm -f "$@"
        say "deleted the downloaded archive (use --keep-archives to keep it)"
    fi
}

first_file() {  # first_file FILE...: print the first that exists and is non-empty
    local f
    for f in "$@"; do
        if [[ -s $f ]]; then printf '%s' "$f"; return 0; fi
    done
    return 0
}

# --- where each source goes ---------------------------------------------------------

target_of() {
    case $1 in
        wiki) printf '%s' "$DATA/wiki_crop" ;;
        imdb) printf '%s' "$DATA/imdb_crop" ;;
        utk) printf '%s' "$DATA/UTKFace" ;;
        afad) printf '%s' "$DATA/AFAD-Full" ;;
        asia) printf '%s' "$DATA/All-Age-Faces" ;;
    esac
}

has_jpg() { [[ -d $1 && -n $(find "$1" -maxdepth 1 -type f -iname '*.jpg' -print -quit) ]]; }

is_present() {
    local t
    t=$(target_of "$1")
    case $1 in
        wiki) [[ -f $t/wiki.mat ]] ;;
        imdb) [[ -f $t/imdb.mat ]] ;;
        utk) has_jpg "$t" ;;
        afad) [[ -d $t && -n $(find "$t" -mindepth 2 -maxdepth 2 -type d -name 111 -print -quit) ]] ;;
        asia) has_jpg "$t/original images" ;;
    esac
}

# --- the sources --------------------------------------------------------------------

get_mat_source() {  # wiki or imdb
    local name=$1 archive="$DOWNLOADS/$1_crop.tar" mat
    fetch "$IMDB_WIKI_URL/${name}_crop.tar" "$archive"
    unpack "$archive"
    mat=$(find "$WORK" -type f -name "$name.mat" -print -quit)
    install_dir "${mat:+$(dirname "$mat")}" "$(target_of "$name")"
    drop_archive "$archive"
}

get_wiki() { get_mat_source wiki; }
get_imdb() { get_mat_source imdb; }

get_utk() {
    local archive image
    archive=$(first_file "$DATA/UTKFace.tar.gz")
    if [[ -z $archive ]]; then
        warn "UTKFace cannot be downloaded by a script: it is on Google Drive behind a"
        warn "confirmation page. To add it:"
        warn "  1. open $UTK_PAGE, follow its 'Aligned&Cropped Faces'"
        warn "     link (Google Drive) and download UTKFace.tar.gz"
        warn "  2. save it as $(rel "$DATA")/UTKFace.tar.gz and run: bash download.sh utk"
        warn "     (or unpack it yourself so that $(rel "$(target_of utk)")/*.jpg exists)"
        return "$MANUAL"
    fi
    unpack "$archive"
    image=$(find "$WORK" -type f -name '[0-9]*_[01]_*.jpg' -print -quit)
    install_dir "${image:+$(dirname "$image")}" "$(target_of utk)"
    say "kept your archive $(rel "$archive")"
}

get_afad() {
    local dir="$DOWNLOADS/afad" parts=() name st a b found
    need_tool xz "needed to unpack AFAD-Full.tar.xz"
    mkdir -p "$dir"
    # The repository holds AFAD-Full.tar.xzaa, ...xzab, ...: take them in order until
    # the server answers 404 for the next name.
    for a in {a..z}; do
        for b in {a..z}; do
            name="AFAD-Full.tar.xz$a$b"
            if [[ ! -s $dir/$name ]]; then
                st=0
                remote_exists "$AFAD_URL/$name" || st=$?
                if (( st == 1 )); then
                    break 2
                elif (( st != 0 )); then
                    warn "error: cannot reach $AFAD_URL/$name"
                    return 1
                fi
                fetch "$AFAD_URL/$name" "$dir/$name"
            fi
            parts+=("$dir/$name")
        done
    done
    if (( ${#parts[@]} < 2 )); then
        warn "error: expected several AFAD-Full.tar.xz?? parts in $AFAD_URL, found ${#parts[@]}"
        warn "(the repository layout may have changed; see https://github.com/afad-dataset/tarball)"
        return 1
    fi
    new_work_dir
    say "joining ${#parts[@]} parts and unpacking (this takes a while)"
    cat "${parts[@]}" | tar -xJf - -C "$WORK" || unpack_failed "$dir/AFAD-Full.tar.xz??"
    found=$(find "$WORK" -type d -name 111 -print -quit)
    install_dir "${found:+$(dirname "$(dirname "$found")")}" "$(target_of afad)"
    drop_archive "${parts[@]}"
    rmdir "$dir" 2>/dev/null || true
}

get_asia() {
    local archive st found
    if [[ -f $DOWNLOADS/$AAF_ZIP_NAME ]] && ! is_zip "$DOWNLOADS/$AAF_ZIP_NAME"; then
        rm -f "$DOWNLOADS/$AAF_ZIP_NAME"  # not a zip: an error page saved by an earlier run
    fi
    archive=$(first_file "$DATA/$AAF_ZIP_NAME" "$DATA"/All-Age-Faces*.zip "$DOWNLOADS/$AAF_ZIP_NAME")
    if [[ -z $archive ]]; then
        archive="$DOWNLOADS/$AAF_ZIP_NAME"
        st=0
        fetch "$AAF_ZIP_URL" "$archive" || st=$?
        if (( st == 0 )) && ! is_zip "$archive"; then
            warn "the Dropbox link did not return a zip file (the link may be gone)"
            rm -f "$archive"
            st=1
        fi
        if (( st != 0 )); then
            warn "All-Age-Faces could not be fetched. To add it by hand:"
            warn "  1. download '$AAF_ZIP_NAME' from the link in $AAF_REPO"
            warn "     (Baidu Pan: $AAF_BAIDU)"
            warn "  2. put it in $(rel "$DATA")/ and run: bash download.sh asia"
            warn "     (or unpack it yourself so that '$(rel "$(target_of asia)")/original images/*.jpg' exists)"
            return "$MANUAL"
        fi
    fi
    unpack "$archive"
    found=$(find "$WORK" -path '*/__MACOSX' -prune -o -type d -name 'original images' -print -quit)
    install_dir "${found:+$(dirname "$found")}" "$(target_of asia)"
    if [[ $archive == "$DOWNLOADS"/* ]]; then
        drop_archive "$archive"
    else
        say "kept your archive $(rel "$archive")"
    fi
}

# --- main ---------------------------------------------------------------------------

sources=()
for arg in "$@"; do
    case $arg in
        -h | --help) usage; exit 0 ;;
        --keep-archives) KEEP_ARCHIVES=1 ;;
        all) sources+=("${ALL_SOURCES[@]}") ;;
        wiki | imdb | utk | afad | asia) sources+=("$arg") ;;
        *)
            printf 'download.sh: unknown source or option: %s\n\n' "$arg" >&2
            usage >&2
            exit 2
            ;;
    esac
done
if (( ${#sources[@]} == 0 )); then
    printf 'download.sh: name at least one source\n\n' >&2
    usage >&2
    exit 2
fi

seen=" "
summary=()
status=0
for src in "${sources[@]}"; do
    case $seen in *" $src "*) continue ;; esac
    seen+="$src "
    target=$(target_of "$src")
    echo "==> $src -> $(rel "$target")"
    if is_present "$src"; then
        say "already present; skipping"
        summary+=("$src: already present")
        continue
    fi
    if [[ -e $target ]]; then
        warn "error: $(rel "$target") exists but does not look complete; move it away and run again"
        summary+=("$src: FAILED ($(rel "$target") exists but is incomplete)")
        status=1
        continue
    fi
    mkdir -p "$DOWNLOADS"
    WORK="$DATA/.unpack-$src"
    # A subshell per source: errexit stays in force inside it, and a failure only ends
    # this source. The trap removes the half-unpacked folder, never the downloads.
    set +e
    (
        set -e
        trap 'rm -rf "$WORK"' EXIT
        "get_$src"
    )
    st=$?
    set -e
    if (( st == 130 || st == 143 )); then
        echo "interrupted; run the same command again to resume" >&2
        exit "$st"
    fi
    case $st in
        0) summary+=("$src: ready in $(rel "$target")") ;;
        "$MANUAL") summary+=("$src: NEEDS MANUAL STEPS (see above)"); status=1 ;;
        *) summary+=("$src: FAILED (exit $st; see the messages above)"); status=1 ;;
    esac
done
rmdir "$DOWNLOADS" 2>/dev/null || true

echo
echo "Summary:"
printf '  %s\n' "${summary[@]}"
if (( status == 0 )); then
    echo "Next: python preprocessing/dataset_proc.py --source SOURCE (run from $ROOT; see dataset/README.md)"
fi
exit "$status"
