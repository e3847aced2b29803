// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Test} from "./utils/Test.sol";
import {ShipmentNames} from "./utils/ShipmentNames.sol";
import {RouterFixture} from "./utils/RouterFixture.sol";
import {OracleRouter} from "../src/OracleRouter.sol";
import {ColdChainEscrow} from "../src/ColdChainEscrow.sol";
import {TestStablecoin} from "../src/TestStablecoin.sol";
import {FeeOnTransferToken} from "../src/test/FeeOnTransferToken.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {Report} from "../src/interfaces/IOracleRouter.sol";

/// @notice Fuzz tests of one shipment's life, verdicts relayed through a real 2-of-3 router.
contract ColdChainEscrowFuzzTest is Test, RouterFixture {
    OracleRouter internal router;
    ColdChainEscrow internal escrow;
    TestStablecoin internal token;
    uint256[] internal keys;
    address internal constant BUYER = address(0xB0B);
    address internal constant SELLER = address(0x5E11);
    address internal constant MALLORY = address(0xBAD);
    string internal NAME;
    bytes32 internal ID;
    bytes32 internal constant PROFILE = bytes32("refrigerated");
    uint64 internal constant MIN_SETTLEMENT = 2 days;
    uint64 internal nextEpoch = 1;

    /// @dev ColdChainEscrow's event, declared again for expectEmit (solc 0.8.19 cannot emit `C.E`).
    event ShipmentProposed(
        bytes32 indexed shipmentId,
        address indexed buyer,
        address indexed seller,
        bytes32 termsHash,
        uint256 amount,
        bytes32 profile,
        uint64 expectedDelivery,
        uint64 deadline,
        string name
    );

    function setUp() public {
        vm.warp(1_750_000_000);
        (router, keys) = deployRouter(3, 2);
        escrow = new ColdChainEscrow(router);
        router.scheduleConsumerApproval(address(escrow));
        escrow.setProfile(PROFILE, keccak256("refrigerated.yaml"), MIN_SETTLEMENT);
        token = new TestStablecoin();
        NAME = ShipmentNames.nameOf(BUYER, "shipment-one");
        ID = ShipmentNames.idOf(NAME);
    }

    function _propose(address buyer, IERC20 t, uint256 amount, uint64 ttl) internal returns (bytes32 terms) {
        return _proposeAs(buyer, NAME, t, amount, ttl);
    }

    function _proposeAs(address buyer, string memory name, IERC20 t, uint256 amount, uint64 ttl)
        internal
        returns (bytes32 terms)
    {
        uint64 delivery = uint64(block.timestamp) + 1 days;
        TestStablecoin(address(t)).mint(buyer, amount);
        vm.prank(buyer);
        t.approve(address(escrow), amount);
        vm.prank(buyer);
        terms = escrow.createShipment(name, SELLER, t, amount, PROFILE, delivery, delivery + MIN_SETTLEMENT + ttl);
    }

    function _open(uint256 amount, uint64 ttl) internal returns (uint64 deadline) {
        bytes32 terms = _propose(BUYER, token, amount, ttl);
        vm.prank(SELLER);
        escrow.acceptShipment(ID, BUYER, terms);
        deadline = escrow.shipment(ID).deadline;
    }

    function _verdict(int256 value) internal {
        Report memory report = coldChainReport(ID, value, nextEpoch++);
        uint256[] memory signing = new uint256[](2);
        (signing[0], signing[1]) = (keys[0], keys[2]);
        router.submit(report, signSorted(signing, router.reportDigest(report)));
    }

    function _status() internal view returns (ColdChainEscrow.Status) {
        return escrow.shipment(ID).status;
    }

    /// @dev Breach refunds the buyer, delivered pays the seller, no decision leaves it open; a verdict
    ///      accepted after the deadline still settles an open shipment.
    function testFuzz_verdictSettlesAsItSays(uint256 amount, uint64 ttl, uint8 value, uint64 lateBy) public {
        amount = bound(amount, 1, 1e30);
        ttl = uint64(bound(ttl, 0, 365 days));
        int256 v = int256(uint256(value % 3));
        uint64 deadline = _open(amount, ttl);
        vm.warp(bound(lateBy, block.timestamp, uint256(deadline) + 30 days));
        _verdict(v);
        if (v == 1) {
            assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Voided), "breach voids");
            assertEq(token.balanceOf(BUYER), amount, "buyer refunded");
            assertEq(token.balanceOf(SELLER), 0, "seller unpaid");
        } else if (v == 2) {
            assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Released), "delivered releases");
            assertEq(token.balanceOf(SELLER), amount, "seller paid");
            assertEq(token.balanceOf(BUYER), 0, "buyer not refunded");
        } else {
            assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Open), "no decision keeps it open");
            assertEq(token.balanceOf(address(escrow)), amount, "escrow still holds it");
        }
        assertEq(
            token.balanceOf(BUYER) + token.balanceOf(SELLER) + token.balanceOf(address(escrow)), amount, "conserved"
        );
    }

    /// @dev Only the buyer, only after the deadline, only once; a verdict after a reclaim moves nothing.
    function testFuzz_reclaimOnlyByBuyerAfterDeadline(uint256 amount, uint64 ttl, address caller, uint64 at) public {
        vm.assume(caller != BUYER);
        amount = bound(amount, 1, 1e30);
        ttl = uint64(bound(ttl, 0, 365 days));
        uint64 deadline = _open(amount, ttl);

        vm.warp(bound(at, block.timestamp, deadline));
        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.DeadlineNotReached.selector, deadline));
        escrow.reclaim(ID);

        vm.warp(bound(at, uint256(deadline) + 1, uint256(deadline) + 365 days));
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotBuyer.selector, caller));
        escrow.reclaim(ID);

        vm.prank(BUYER);
        escrow.reclaim(ID);
        assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Reclaimed), "reclaimed");
        assertEq(token.balanceOf(BUYER), amount, "buyer refunded");

        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotOpen.selector, ID));
        escrow.reclaim(ID);
        _verdict(2);
        assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Reclaimed), "a late verdict changes nothing");
        assertEq(token.balanceOf(SELLER), 0, "seller unpaid after reclaim");
    }

    /// @dev The first deciding verdict wins; later verdicts of any value change nothing.
    function testFuzz_settledShipmentIgnoresLaterVerdicts(uint256 amount, bool breachFirst, uint8 later) public {
        amount = bound(amount, 1, 1e30);
        _open(amount, 1 days);
        _verdict(breachFirst ? int256(1) : int256(2));
        ColdChainEscrow.Status settled = _status();
        _verdict(int256(uint256(later % 3)));
        _verdict(breachFirst ? int256(2) : int256(1));
        assertEq(uint256(_status()), uint256(settled), "final status unchanged");
        assertEq(token.balanceOf(breachFirst ? BUYER : SELLER), amount, "winner paid once");
        assertEq(token.balanceOf(breachFirst ? SELLER : BUYER), 0, "other side unpaid");
        assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
    }

    function testFuzz_onlyTheRouterMayReport(address caller, uint8 value) public {
        vm.assume(caller != address(router));
        _open(1e6, 1 days);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotRouter.selector, caller));
        escrow.onReport(coldChainReport(ID, int256(uint256(1 + value % 2)), 1));
        assertEq(uint256(_status()), uint256(ColdChainEscrow.Status.Open), "still open");
    }

    /// @dev Once a seller accepted, the id is bound: the buyer cannot propose it again, to this seller or
    ///      another (ShipmentExists), and a stranger cannot propose its name at all (NameNotBuyers).
    function testFuzz_anAcceptedIdIsBoundToItsParties(address other, uint256 amount) public {
        vm.assume(other != address(0) && other != BUYER && other != SELLER);
        amount = bound(amount, 1, 1e30);
        _open(1e6, 1 days);
        uint64 delivery = uint64(block.timestamp) + 1 days;
        token.mint(other, amount);
        vm.prank(other);
        token.approve(address(escrow), amount);
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NameNotBuyers.selector, NAME, other));
        escrow.createShipment(NAME, SELLER, token, amount, PROFILE, delivery, delivery + MIN_SETTLEMENT);
        token.mint(BUYER, amount);
        vm.prank(BUYER);
        token.approve(address(escrow), amount);
        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.ShipmentExists.selector, ID));
        escrow.createShipment(NAME, other, token, amount, PROFILE, delivery, delivery + MIN_SETTLEMENT);
        assertEq(escrow.shipment(ID).buyer, BUYER, "first buyer keeps it");
    }

    /// @dev Front-running: Mallory copies the buyer's name from the mempool and sends it first, from any
    ///      account, through either create function: it reverts with NameNotBuyers and moves nothing. The
    ///      buyer's own proposal then goes through and the seller's acceptance binds it.
    function testFuzz_aFrontRunnerCopyingTheNameReverts(address mallory, uint256 amount, bool withWindow) public {
        vm.assume(mallory != BUYER && mallory != address(0) && mallory != address(escrow));
        amount = bound(amount, 1, 1e30);
        uint64 delivery = uint64(block.timestamp) + 1 days;
        token.mint(mallory, amount);
        vm.prank(mallory);
        token.approve(address(escrow), amount);
        vm.prank(mallory);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NameNotBuyers.selector, NAME, mallory));
        if (withWindow) {
            ColdChainEscrow.ShipmentTerms memory t = ColdChainEscrow.ShipmentTerms({
                seller: SELLER,
                token: token,
                amount: amount,
                profile: PROFILE,
                expectedDelivery: delivery,
                deadline: delivery + MIN_SETTLEMENT,
                liveness: 1 hours,
                answerWindow: 1 hours,
                disputeBond: 0
            });
            escrow.createShipmentWithWindow(NAME, t);
        } else {
            escrow.createShipment(NAME, SELLER, token, amount, PROFILE, delivery, delivery + MIN_SETTLEMENT);
        }
        assertEq(token.balanceOf(mallory), amount, "nothing taken from mallory");
        assertEq(uint256(escrow.proposal(ID, mallory, SELLER).status), 0, "no proposal of mallory's");
        bytes32 terms = _propose(BUYER, token, amount, 0);
        vm.prank(SELLER);
        escrow.acceptShipment(ID, BUYER, terms);
        assertEq(escrow.shipment(ID).buyer, BUYER, "bound to the buyer");
        assertEq(escrow.shipment(ID).seller, SELLER, "bound to the seller");
        assertEq(token.balanceOf(address(escrow)), amount, "only the buyer's deposit");
    }

    /// @dev Mallory's own name with the buyer's reference is another shipment id: proposing and accepting it
    ///      from two accounts of hers binds her id only, and the buyer's name still opens normally.
    function testFuzz_aNameWithAnotherPrefixIsAnotherId(address mallory, address mallorySeller) public {
        vm.assume(mallory != BUYER && mallory != address(0) && mallory != address(escrow));
        vm.assume(mallorySeller != address(0) && mallorySeller != mallory);
        string memory hers = ShipmentNames.nameOf(mallory, "shipment-one");
        bytes32 herId = ShipmentNames.idOf(hers);
        assertTrue(herId != ID, "another prefix, another id");
        uint64 delivery = uint64(block.timestamp) + 1 days;
        token.mint(mallory, 1e6);
        vm.prank(mallory);
        token.approve(address(escrow), 1e6);
        vm.prank(mallory);
        bytes32 herTerms =
            escrow.createShipment(hers, mallorySeller, token, 1e6, PROFILE, delivery, delivery + MIN_SETTLEMENT);
        vm.prank(mallorySeller);
        escrow.acceptShipment(herId, mallory, herTerms);
        assertEq(escrow.shipment(herId).buyer, mallory, "her id is hers");
        assertEq(uint256(escrow.shipment(ID).status), 0, "the buyer's id untouched");
        _open(2e6, 0);
        assertEq(escrow.shipment(ID).buyer, BUYER, "the buyer's id is the buyer's");
        assertEq(escrow.shipment(ID).amount, 2e6, "with the buyer's deposit");
    }

    /// @dev The escrow's id is keccak256("shipment:" + name), the oracle's subject_id("shipment", name), for
    ///      any buyer and any valid reference; ShipmentProposed carries the id and the name.
    function testFuzz_theIdIsTheSubjectOfTheName(address buyer, uint256 refSeed, uint8 length) public {
        vm.assume(buyer != address(0) && buyer != SELLER && buyer != address(escrow));
        string memory ref = _validReference(refSeed, 1 + (length % uint8(escrow.MAX_REFERENCE())));
        string memory name = ShipmentNames.nameOf(buyer, ref);
        bytes32 id = keccak256(bytes(string.concat("shipment:", name)));
        assertEq(escrow.shipmentIdOf(name), id, "shipmentIdOf");
        uint64 delivery = uint64(block.timestamp) + 1 days;
        token.mint(buyer, 1e6);
        vm.prank(buyer);
        token.approve(address(escrow), 1e6);
        bytes32 terms = escrow.termsHash(
            id,
            ColdChainEscrow.Shipment({
                buyer: buyer,
                deadline: delivery + MIN_SETTLEMENT,
                status: ColdChainEscrow.Status.Proposed,
                seller: SELLER,
                token: token,
                amount: 1e6,
                profile: PROFILE,
                expectedDelivery: delivery,
                liveness: 0,
                answerWindow: 0,
                disputeBond: 0
            })
        );
        vm.expectEmit(true, true, true, true);
        emit ShipmentProposed(id, buyer, SELLER, terms, 1e6, PROFILE, delivery, delivery + MIN_SETTLEMENT, name);
        vm.prank(buyer);
        escrow.createShipment(name, SELLER, token, 1e6, PROFILE, delivery, delivery + MIN_SETTLEMENT);
        assertEq(escrow.proposal(id, buyer, SELLER).buyer, buyer, "the proposal sits under that id");
    }

    /// @dev Any reference bytes after the buyer's prefix: accepted exactly when 1 .. MAX_REFERENCE characters
    ///      of A-Z a-z 0-9 . _ -, else BadShipmentName with the reason; uppercase hex in the prefix (the
    ///      checksummed address) or a missing separator is not the buyer's prefix.
    function testFuzz_namesOutsideTheFormatRevert(bytes memory ref, bool upper) public {
        string memory name = string.concat(ShipmentNames.nameOf(BUYER, ""), string(ref));
        uint64 delivery = uint64(block.timestamp) + 1 days;
        token.mint(BUYER, 1e6);
        vm.prank(BUYER);
        token.approve(address(escrow), 1e6);
        string memory why = _referenceProblem(ref);
        if (upper) {
            bytes memory b = bytes(name);
            b[41] = "B"; // BUYER is 0x...0b0b: its last digit in uppercase, as a checksummed spelling has it
            vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NameNotBuyers.selector, string(b), BUYER));
            vm.prank(BUYER);
            escrow.createShipment(string(b), SELLER, token, 1e6, PROFILE, delivery, delivery + MIN_SETTLEMENT);
            return;
        }
        if (bytes(why).length != 0) {
            vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.BadShipmentName.selector, name, why));
        }
        vm.prank(BUYER);
        escrow.createShipment(name, SELLER, token, 1e6, PROFILE, delivery, delivery + MIN_SETTLEMENT);
        if (bytes(why).length == 0) {
            assertEq(uint256(escrow.proposal(escrow.shipmentIdOf(name), BUYER, SELLER).status), 5, "proposed");
        }
        // Without the ":" separator the name is not the buyer's.
        string memory glued = string.concat(Strings.toHexString(BUYER), "-", string(ref));
        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NameNotBuyers.selector, glued, BUYER));
        escrow.createShipment(glued, SELLER, token, 1e6, PROFILE, delivery, delivery + MIN_SETTLEMENT);
    }

    /// @dev The reference rules, written again here: "" when `ref` is a valid reference, else the reason.
    function _referenceProblem(bytes memory ref) internal view returns (string memory) {
        if (ref.length == 0) return "empty reference";
        if (ref.length > escrow.MAX_REFERENCE()) return "reference too long";
        for (uint256 i = 0; i < ref.length; ++i) {
            uint8 c = uint8(ref[i]);
            bool letter = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
            bool digit = c >= 0x30 && c <= 0x39;
            if (!(letter || digit || c == 0x2e || c == 0x5f || c == 0x2d)) return "reference character not allowed";
        }
        return "";
    }

    /// @dev A valid reference of `length` characters drawn from the allowed set by `seed`.
    function _validReference(uint256 seed, uint256 length) internal pure returns (string memory) {
        bytes memory alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
        bytes memory out = new bytes(length);
        for (uint256 i = 0; i < length; ++i) {
            out[i] = alphabet[uint256(keccak256(abi.encode(seed, i))) % alphabet.length];
        }
        return string(out);
    }

    /// @dev Nothing settles before the seller accepts: verdicts are ignored, the buyer may cancel any time.
    function testFuzz_nothingSettlesBeforeAcceptance(uint256 amount, uint8 value, uint64 later) public {
        amount = bound(amount, 1, 1e30);
        _propose(BUYER, token, amount, 0);
        _verdict(int256(1 + uint256(value % 2)));
        assertEq(
            uint256(escrow.proposal(ID, BUYER, SELLER).status), uint256(ColdChainEscrow.Status.Proposed), "pending"
        );
        assertEq(token.balanceOf(address(escrow)), amount, "deposit untouched by a verdict");
        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotOpen.selector, ID));
        escrow.reclaim(ID);
        vm.warp(bound(later, block.timestamp, block.timestamp + 400 days));
        vm.prank(BUYER);
        escrow.cancelShipment(ID, SELLER);
        assertEq(token.balanceOf(BUYER), amount, "cancel refunds the whole deposit");
        vm.prank(SELLER);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotProposed.selector, ID));
        escrow.acceptShipment(ID, BUYER, bytes32(0));
    }

    /// @dev The seller accepts exact terms: a different terms hash is refused.
    function testFuzz_sellerAcceptsExactTerms(bytes32 wrong) public {
        bytes32 terms = _propose(BUYER, token, 1e6, 0);
        vm.assume(wrong != terms);
        vm.prank(SELLER);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.TermsChanged.selector, wrong, terms));
        escrow.acceptShipment(ID, BUYER, wrong);
        vm.prank(MALLORY);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotProposed.selector, ID));
        escrow.acceptShipment(ID, BUYER, terms);
    }

    /// @dev The deadline must be at least the profile's minimum after the expected delivery.
    function testFuzz_deadlineAtLeastTheProfileMinimum(uint64 short) public {
        short = uint64(bound(short, 0, MIN_SETTLEMENT - 1));
        uint64 delivery = uint64(block.timestamp) + 1 days;
        token.mint(BUYER, 1e6);
        vm.prank(BUYER);
        token.approve(address(escrow), 1e6);
        vm.prank(BUYER);
        vm.expectRevert(
            abi.encodeWithSelector(
                ColdChainEscrow.DeadlineTooEarly.selector, delivery + short, delivery + MIN_SETTLEMENT
            )
        );
        escrow.createShipment(NAME, SELLER, token, 1e6, PROFILE, delivery, delivery + short);
    }

    /// @dev A profile not in the registry (or removed) cannot be proposed.
    function testFuzz_unknownProfileRefused(bytes32 profile) public {
        vm.assume(profile != PROFILE);
        uint64 delivery = uint64(block.timestamp) + 1 days;
        token.mint(BUYER, 1e6);
        vm.prank(BUYER);
        token.approve(address(escrow), 1e6);
        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.UnknownProfile.selector, profile));
        escrow.createShipment(NAME, SELLER, token, 1e6, profile, delivery, delivery + 400 days);
        vm.prank(MALLORY);
        vm.expectRevert(abi.encodeWithSelector(ColdChainEscrow.NotOwner.selector, MALLORY));
        escrow.setProfile(profile, keccak256("x"), 0);
    }

    /// @dev With a fee-on-transfer token the recorded amount is what arrived, and exactly that is paid out.
    function testFuzz_recordedAmountIsReceived(uint256 amount, uint16 feeBps) public {
        amount = bound(amount, 1e4, 1e30);
        FeeOnTransferToken fee = new FeeOnTransferToken();
        fee.setFeeBps(bound(feeBps, 1, 5_000));
        uint256 before = fee.balanceOf(address(escrow));
        bytes32 terms = _propose(BUYER, IERC20(address(fee)), amount, 0);
        uint256 received = fee.balanceOf(address(escrow)) - before;
        assertLt(received, amount, "the token took a fee");
        assertEq(escrow.proposal(ID, BUYER, SELLER).amount, received, "recorded = received");
        vm.prank(SELLER);
        escrow.acceptShipment(ID, BUYER, terms);
        fee.setFeeBps(0);
        _verdict(2);
        assertEq(fee.balanceOf(SELLER), received, "seller paid what was received");
        assertEq(fee.balanceOf(address(escrow)), 0, "nothing stuck, nothing short");
    }
}
