"""WorkRegistry: works as ERC-721 tokens with a URI and a once-only ISRC."""

import brownie

from contract_helpers import ISRC, err

NO_ISRC = b"\x00" * 12


def test_registerWork_mints_to_caller_with_uri_and_isrc(works, artist):
    tx = works.registerWork("ipfs://a", ISRC, {"from": artist})

    ev = tx.events["WorkRegistered"]
    assert (ev["workId"], ev["owner"], bytes(ev["isrc"]), ev["uri"]) == (1, artist, ISRC, "ipfs://a")
    assert works.ownerOf(1) == artist
    assert works.tokenURI(1) == "ipfs://a"
    assert bytes(works.isrcOf(1)) == ISRC
    assert works.workIdByIsrc(ISRC) == 1
    assert works.totalWorks() == 1


def test_registerWork_without_isrc_claims_no_code(works, artist):
    works.registerWork("ipfs://a", NO_ISRC, {"from": artist})
    tx = works.registerWork("ipfs://b", NO_ISRC, {"from": artist})

    assert tx.events["WorkRegistered"]["workId"] == 2
    assert bytes(works.isrcOf(2)) == NO_ISRC
    assert works.workIdByIsrc(NO_ISRC) == 0
    assert works.totalWorks() == 2


def test_registerWork_reverts_when_isrc_already_registered(works, artist, outsider):
    works.registerWork("ipfs://a", ISRC, {"from": artist})

    with brownie.reverts(err("IsrcAlreadyRegistered(bytes12,uint256)", ISRC, 1)):
        works.registerWork("ipfs://b", ISRC, {"from": outsider})


def test_registerWork_reverts_on_invalid_isrc(works, artist):
    bad = b"gbaye2400001"  # lower-case country and registrant
    with brownie.reverts(err("InvalidIsrc(bytes12)", bad)):
        works.registerWork("ipfs://a", bad, {"from": artist})


def test_registerWork_reverts_on_letter_in_isrc_digits(works, artist):
    bad = b"GBAYE24000X1"
    with brownie.reverts(err("InvalidIsrc(bytes12)", bad)):
        works.registerWork("ipfs://a", bad, {"from": artist})


def test_registerWork_reverts_on_empty_uri(works, artist):
    with brownie.reverts(err("EmptyUri()")):
        works.registerWork("", ISRC, {"from": artist})


def test_setWorkURI_replaces_uri(works, artist):
    works.registerWork("ipfs://a", ISRC, {"from": artist})

    tx = works.setWorkURI(1, "ipfs://a2", {"from": artist})

    assert tx.events["WorkURIUpdated"]["uri"] == "ipfs://a2"
    assert works.tokenURI(1) == "ipfs://a2"


def test_setWorkURI_reverts_for_non_owner(works, artist, outsider):
    works.registerWork("ipfs://a", ISRC, {"from": artist})

    with brownie.reverts(err("NotWorkOwner(uint256,address)", 1, outsider.address)):
        works.setWorkURI(1, "ipfs://mine", {"from": outsider})


def test_setWorkURI_reverts_on_empty_uri(works, artist):
    works.registerWork("ipfs://a", ISRC, {"from": artist})

    with brownie.reverts(err("EmptyUri()")):
        works.setWorkURI(1, "", {"from": artist})


def test_transferFrom_moves_work_and_uri_control(works, artist, outsider):
    works.registerWork("ipfs://a", ISRC, {"from": artist})

    works.transferFrom(artist, outsider, 1, {"from": artist})

    assert works.ownerOf(1) == outsider
    works.setWorkURI(1, "ipfs://new-owner", {"from": outsider})
    with brownie.reverts(err("NotWorkOwner(uint256,address)", 1, artist.address)):
        works.setWorkURI(1, "ipfs://old-owner", {"from": artist})


def test_registerWork_emits_WorkRegistered_before_a_contract_registrant_acts_on_the_work(
    ReentrantRegistrant, works, ledger, deployer
):
    # Finding 2: a contract registrant sets a split and terms from onERC721Received; the work's
    # own event must come first so an indexer never sees a split for an unknown work.
    registrant = ReentrantRegistrant.deploy(works, ledger, {"from": deployer})

    tx = registrant.register("ipfs://reentrant", {"from": deployer})

    order = [log.name for log in tx.events if log.name in ("WorkRegistered", "SplitSet", "TermsSet")]
    assert order == ["WorkRegistered", "SplitSet", "TermsSet"]
    work_id = tx.events["WorkRegistered"]["workId"]
    assert works.ownerOf(work_id) == registrant
    assert ledger.splitCommitmentOf(work_id) != 0
