//! The public strict tar reader, `ocikit_codec::tar`: archives written by the `tar` crate
//! read entry by entry, and hostile ones refused with typed errors.

use std::io::Read;

use ocikit_codec::tar::{Kind, TarReader};
use ocikit_codec::{Error, Limit, Limits};

fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o640);
    header.set_uid(1000);
    header.set_mtime(1_700_000_000);
    builder.append_data(&mut header, name, data).unwrap();
}

/// Name, kind and data of each entry.
type Entries = Vec<(Vec<u8>, Kind, Vec<u8>)>;

fn read_all(archive: &[u8], limits: Limits) -> Result<Entries, Error> {
    let mut reader = TarReader::new(archive, limits);
    let mut out = Vec::new();
    while let Some(header) = reader.next_header()? {
        let mut data = Vec::new();
        reader
            .data()
            .read_to_end(&mut data)
            .map_err(ocikit_codec::compression::error_from_io)?;
        out.push((header.name, header.kind, data));
    }
    Ok(out)
}

#[test]
fn reads_what_the_tar_crate_writes_entry_by_entry() {
    let long = format!("{}/file", "d".repeat(150));
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    builder.append_data(&mut dir, "etc/", &b""[..]).unwrap();
    file(&mut builder, "etc/hostname", b"host\n");
    file(&mut builder, &long, &vec![7u8; 70_000]);
    builder
        .append_pax_extensions([("SCHILY.xattr.user.k", &b"v"[..])])
        .unwrap();
    file(&mut builder, "skipped", &vec![1u8; 3000]);
    file(&mut builder, "last", b"end");
    let archive = builder.into_inner().unwrap();

    let mut reader = TarReader::new(&archive[..], Limits::default());
    let dir = reader.next_header().unwrap().unwrap();
    assert_eq!(
        (&dir.name[..], dir.kind, dir.size),
        (&b"etc/"[..], Kind::Dir, 0)
    );
    let host = reader.next_header().unwrap().unwrap();
    assert_eq!((host.kind, host.mode, host.uid), (Kind::File, 0o640, 1000));
    assert_eq!(host.mtime, (1_700_000_000, 0));
    let mut data = String::new();
    reader.data().read_to_string(&mut data).unwrap();
    assert_eq!(data, "host\n");
    // A GNU long name, its data read in small pieces.
    let big = reader.next_header().unwrap().unwrap();
    assert_eq!(big.name, long.as_bytes());
    let mut entry = reader.data();
    let mut first = [0u8; 100];
    entry.read_exact(&mut first).unwrap();
    assert_eq!(entry.remaining(), 70_000 - 100);
    let mut rest = Vec::new();
    entry.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), 70_000 - 100);
    assert!(rest.iter().all(|&b| b == 7));
    // PAX records applied; data left unread is skipped by the next header.
    let skipped = reader.next_header().unwrap().unwrap();
    assert_eq!(skipped.xattrs, vec![(b"user.k".to_vec(), b"v".to_vec())]);
    let mut three = [0u8; 3];
    reader.data().read_exact(&mut three).unwrap();
    let last = reader.next_header().unwrap().unwrap();
    assert_eq!(last.name, b"last");
    reader.data().read_to_string(&mut data).unwrap();
    assert_eq!(data, "host\nend");
    assert!(reader.next_header().unwrap().is_none());
    assert_eq!(reader.entries(), 5);
    // Reading at the end stays at the end.
    assert!(reader.next_header().unwrap().is_none());
}

#[test]
fn refuses_truncation_oversized_metadata_too_many_entries_and_ambiguity() {
    let mut builder = tar::Builder::new(Vec::new());
    file(&mut builder, "a", &[1u8; 2000]);
    file(&mut builder, "b", b"b");
    let archive = builder.into_inner().unwrap();
    assert_eq!(read_all(&archive, Limits::default()).unwrap().len(), 2);

    // Cut inside the first entry's data: the data reader fails with a typed truncation.
    match read_all(&archive[..512 + 1000], Limits::default()) {
        Err(Error::Corrupt {
            format: "tar",
            source,
        }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof);
        }
        other => panic!("truncated data read as {other:?}"),
    }
    // Cut inside the second header.
    let cut = 512 + 2048 + 100;
    assert!(matches!(
        read_all(&archive[..cut], Limits::default()),
        Err(Error::Corrupt { format: "tar", .. })
    ));
    // A flipped byte in a header: the checksum fails.
    let mut bad = archive.clone();
    bad[10] ^= 1;
    assert!(matches!(
        read_all(&bad, Limits::default()),
        Err(Error::Corrupt { format: "tar", .. })
    ));

    // Too many entries, and a PAX record above the metadata limit (refused before it is
    // buffered).
    let few = Limits::default().with_max_entries(1);
    assert!(matches!(
        read_all(&archive, few),
        Err(Error::LimitExceeded {
            limit: Limit::Entries,
            max: 1
        })
    ));
    let mut pax = tar::Builder::new(Vec::new());
    pax.append_pax_extensions([("comment", &vec![b'a'; 8192][..])])
        .unwrap();
    file(&mut pax, "x", b"x");
    let pax = pax.into_inner().unwrap();
    assert_eq!(read_all(&pax, Limits::default()).unwrap().len(), 1);
    let small = Limits::default().with_max_entry_metadata(4096);
    assert!(matches!(
        read_all(&pax, small),
        Err(Error::LimitExceeded {
            limit: Limit::EntryMetadata,
            max: 4096
        })
    ));

    // Two PAX headers for one entry: refused when strict (the default), read when lenient.
    let mut two = tar::Builder::new(Vec::new());
    two.append_pax_extensions([("path", &b"one"[..])]).unwrap();
    two.append_pax_extensions([("path", &b"two"[..])]).unwrap();
    file(&mut two, "x", b"x");
    let two = two.into_inner().unwrap();
    assert!(matches!(
        read_all(&two, Limits::default()),
        Err(Error::InvalidEntry { .. })
    ));
    let mut lenient = TarReader::new(&two[..], Limits::default()).with_strict(false);
    assert_eq!(lenient.next_header().unwrap().unwrap().name, b"two");
}
