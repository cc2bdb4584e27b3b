use super::*;

fn s3(url: &str) -> S3UrlParts {
    match parse(url) {
        Ok(UrlParts::S3(p)) => p,
        other => panic!("{url}: {other:?}"),
    }
}

#[test]
fn file_urls() {
    let ok: &[(&str, &str)] = &[
        ("file:///abs/path", "/abs/path"),
        ("file:///abs/path/", "/abs/path"),
        ("FILE:///a/./b/../c", "/a/c"),
        ("file:/abs", "/abs"),
        ("file:///abs?ignored=1", "/abs"),
        ("file:///a%20b", "/a%20b"),
    ];
    for (url, want) in ok {
        assert_eq!(parse(url), Ok(UrlParts::File(PathBuf::from(want))), "{url}");
    }
    let bad: &[(&str, &str)] = &[
        ("file://./rel", "host \".\" is not allowed"),
        ("file://host/abs", "host \"host\" is not allowed"),
        ("file:rel", "must be absolute"),
        ("file:///a b", "use `path:`"),
        ("file:///a#b", "use `path:`"),
        ("/abs/path", "has no scheme"),
        ("oss://", "missing the host"),
        ("gs://", "missing the bucket"),
        ("webdavs:///p", "missing the host"),
        ("ftp://h/p", "unknown scheme \"ftp\""),
    ];
    for (url, want) in bad {
        let err = parse(url).unwrap_err().to_string();
        assert!(err.contains(want), "{url}: {err}");
    }
}

#[test]
fn s3_urls() {
    let p = s3("s3://bkt/pre/fix");
    assert_eq!((p.bucket.as_str(), p.path.as_str()), ("bkt", "pre/fix"));
    assert_eq!(
        (p.endpoint, p.region, p.force_path_style),
        (None, None, None)
    );

    let p = s3("s3://bkt");
    assert_eq!(p.path, "");
    assert_eq!(s3("s3://bkt/").path, "");
    assert_eq!(s3("s3://bkt//a/./b/").path, "a/b");
    assert_eq!(s3("s3://bkt/a%20b").path, "a b");

    let p = s3(
        "s3://bkt/db?endpoint=http%3A%2F%2Flocalhost%3A9000&region=eu-west-1\
                &forcePathStyle=false&skipVerify=true&partSize=5242880&concurrency=3\
                &signPayload=no&requireContentMD5=0&storageClass=STANDARD_IA",
    );
    assert_eq!(p.endpoint.as_deref(), Some("http://localhost:9000"));
    assert_eq!(p.region.as_deref(), Some("eu-west-1"));
    assert_eq!(p.force_path_style, Some(false));
    assert_eq!(p.skip_verify, Some(true));
    assert_eq!((p.part_size, p.concurrency), (Some(5_242_880), Some(3)));
    assert_eq!(
        (p.sign_payload, p.require_content_md5),
        (Some(false), Some(false))
    );
    assert_eq!(p.storage_class.as_deref(), Some("STANDARD_IA"));

    let p = s3("s3://bkt/db?force-path-style=true&skip-verify=1&part-size=7&endpoint=minio:9000");
    assert_eq!(p.force_path_style, Some(true));
    assert_eq!((p.skip_verify, p.part_size), (Some(true), Some(7)));
    assert_eq!(p.endpoint.as_deref(), Some("https://minio:9000"));

    let p = s3("s3://key:secret@bkt/db");
    assert_eq!(p.bucket, "bkt");
}

#[test]
fn s3_hosts() {
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, bool);
    let cases: &[Case] = &[
        ("s3://b.s3.amazonaws.com/p", "b", None, None, false),
        (
            "s3://b.s3.us-west-2.amazonaws.com/p",
            "b",
            Some("us-west-2"),
            None,
            false,
        ),
        (
            "s3://b.localhost:9000/p",
            "b",
            Some("us-east-1"),
            Some("http://localhost:9000"),
            true,
        ),
        (
            "s3://b.nyc3.digitaloceanspaces.com/p",
            "b",
            Some("nyc3"),
            Some("https://nyc3.digitaloceanspaces.com"),
            false,
        ),
        (
            "s3://b.s3.us-west-004.backblazeb2.com/p",
            "b",
            Some("us-west-004"),
            Some("https://s3.us-west-004.backblazeb2.com"),
            true,
        ),
        (
            "s3://b.s3.fr-par.scw.cloud/p",
            "b",
            Some("fr-par"),
            Some("https://s3.fr-par.scw.cloud"),
            false,
        ),
        (
            "s3://b.s3.filebase.com/p",
            "b",
            None,
            Some("https://s3.filebase.com"),
            false,
        ),
        (
            "s3://my.dotted.bucket/p",
            "my.dotted.bucket",
            None,
            None,
            false,
        ),
        (
            "s3://arn:aws:s3:us-east-2:123456789012:accesspoint/ap/p",
            "arn:aws:s3:us-east-2:123456789012:accesspoint/ap",
            Some("us-east-2"),
            None,
            false,
        ),
    ];
    for (url, bucket, region, endpoint, path_style) in cases {
        let p = s3(url);
        assert_eq!(p.bucket, *bucket, "{url}");
        assert_eq!(p.path, "p", "{url}");
        assert_eq!(p.region.as_deref(), *region, "{url}");
        assert_eq!(p.endpoint.as_deref(), *endpoint, "{url}");
        assert_eq!(p.implied_path_style, *path_style, "{url}");
    }
}

#[test]
fn s3_url_errors() {
    let bad: &[(&str, &str)] = &[
        ("s3:///path", "bucket required"),
        ("s3://localhost:9000/p", "bucket required"),
        ("s3://b/p?concurrency=0", "not a positive integer"),
        ("s3://b/p?partSize=big", "not a positive integer"),
        ("s3://b/p?forcePathStyle=maybe", "not a boolean"),
        ("s3://b/p?region=%zz", "invalid escape"),
        ("s3://b/p?region=a;b", "';'"),
        ("s3://arn:aws:s3:r:1:accesspoint/", "access point"),
        ("s3://u:SECRET@/p", "bucket required"),
    ];
    for (url, want) in bad {
        let err = parse(url).unwrap_err().to_string();
        assert!(err.contains(want), "{url}: {err}");
        assert!(!err.contains("SECRET"), "{err}");
    }
}

#[test]
fn helpers() {
    assert_eq!(ensure_scheme("localhost:9000"), "http://localhost:9000");
    assert_eq!(ensure_scheme("172.20.0.1"), "http://172.20.0.1");
    assert_eq!(ensure_scheme("172.40.0.1"), "https://172.40.0.1");
    assert_eq!(ensure_scheme("s3.example.com"), "https://s3.example.com");
    assert_eq!(ensure_scheme("http://x"), "http://x");
    assert_eq!(redact("s3://k:s@b/p?x=@"), "s3://b/p?x=@");
    assert_eq!(redact("s3://b/p"), "s3://b/p");
    // Secrets with `/` (base64): nothing of them is shown.
    assert_eq!(redact("s3://AKID:SEK/RIT@bkt/p"), "s3://bkt/p");
    assert_eq!(
        redact("s3://AKID:S/E/K@bkt/p?endpoint=x"),
        "s3://bkt/p?endpoint=x"
    );
    assert_eq!(redact("s3://AKID@bkt/p"), "s3://bkt/p");
    assert_eq!(redact("s3://AKID;SEK/RIT@bkt/p"), "s3://bkt/p");
    // Found by fuzzing: a mistyped scheme showed the whole secret.
    assert_eq!(redact("s3;//AKID:SEK/RIT@bkt/p?x=1"), "…@bkt/p?x=1");
    let e = parse("s3://AKID:SEK/RIT@bkt/p").unwrap_err().to_string();
    assert!(!e.contains("SEK") && !e.contains("RIT"), "{e}");
    assert_eq!(percent_decode("a+b%2Fc", true).unwrap(), "a b/c");
    assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
    assert!(percent_decode("%a\u{e9}", false).is_err());
    assert_eq!(percent_encode("a b/c:d", true), "a%20b/c%3Ad");
    assert_eq!(percent_encode("a/b", false), "a%2Fb");
}
