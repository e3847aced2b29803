// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IOracleRouter, IReportSubscriber, Report, ReportKinds} from "./interfaces/IOracleRouter.sol";
import {DisputeBondVault} from "./DisputeBondVault.sol";

/// @title DroughtInsurancePool
/// @notice Parametric drought cover paid in one ERC-20, sold as products.
///
///         Products. The insurer (owner) registers a product: the keccak256 hash of its canonical terms
///         JSON (`termsHash`, see oracle/products), the region subject, trigger / exit / limit /
///         deductible, the coverage window (coverageStart, coverageEnd], a grace period after coverage
///         ends, the period grid (`periodMonths`: 1 monthly, 3 seasonal, ...) and the premium (a flat
///         amount, or limit × rate × (1 + loading)). A policyholder buys a policy with `buyPolicy`,
///         paying the premium in the pool's token; the insurer may also write one itself (`createPolicy`).
///
///         Periods and revisions. A DROUGHT_SEVERITY report's epoch is month index × 1000 + revision
///         (`oracle.reports`); the pool keeps, per (region, month), the value of the highest revision it
///         has heard and ignores any report whose revision is not higher (the router may re-deliver a
///         superseded revision, see OracleRouter). A month counts for a policy when its report's
///         observedAt lies in the product's coverage window; months are grouped into the product's
///         periods (period = month index / periodMonths).
///
///         Payout rule. For each period a policy is entitled to the highest per-month payout of that
///         period: payoutFor(value) − deductible (at least 0). It is paid once per period; a revision
///         that raises the entitlement pays the difference (a top-up); a revision that lowers it never
///         claws anything back. All payouts of a policy together never exceed its limit.
///
///         Settlement is paged, so a region's policy count is not bounded by the router's subscriber
///         gas: `onReport` records the value (O(1)) and pays as many of the region's policies as its gas
///         allows, keeping a cursor; anyone continues with `settle(region, month, count)` or pays one
///         policy with `claim(policyId, month)`. Payouts always go to the insured.
///
///         Capital rule (checked by `buyPolicy`, `createPolicy` and `withdraw`, and kept by every call):
///             token balance ≥ reserved = Σ over open policies (limit − paid so far) + totalOwed.
///         A policy's unpaid limit stays reserved until it is closed, so a claim recorded but not yet
///         paid (any period still waiting for `claim`/`settle`) is always covered. A payout whose
///         transfer fails is recorded as owed (`totalOwed`, reserved) and paid by `claimOwed`.
///
///         Closing. `closeExpired` is allowed only after coverageEnd + grace (the last period's report is
///         evaluated after coverage ends); it first settles every month of the coverage, then releases
///         the policy's unused limit from the reserve.
///
///         Subscription. The pool subscribes to a region when it first insures it and checks the
///         router again on every new policy, so after the router's owner removed it (`removeSubscriber`)
///         a new policy, or anyone calling `resubscribe`, makes it hear the region again; `sync` records
///         the router's latest report for a region the pool missed while unsubscribed.
///
///         Liveness and disputes (issue 14). A product may set a liveness window W (`setLiveness`): a
///         report pays that product's policies only W seconds after it arrived (W = 0: at once). While a
///         report is pending for any product of its region (arrivedAt + the region's longest W), anyone
///         may `dispute(subject, epoch, evidenceCid)` it with a bond of `disputeBond` tokens (held by
///         `bonds`, a DisputeBondVault, apart from capital). A disputed report is frozen: nothing pays on
///         it, for any product. `resolveDispute` settles it: upheld when the network has since posted a
///         higher revision for the same (region, month) (bond back to the watcher plus `disputeReward`
///         from free capital); rejected after `disputeAnswerWindow` with no replacement (bond to the pool;
///         the frozen report then pays). One dispute per report.
contract DroughtInsurancePool is IReportSubscriber, Ownable {
    using SafeERC20 for IERC20;

    enum Status {
        None,
        Active,
        Closed
    }

    struct Product {
        bytes32 termsHash;
        bytes32 region;
        int64 trigger;
        int64 exit;
        uint64 coverageStart;
        uint64 coverageEnd;
        uint128 limit;
        uint128 deductible;
        uint128 premium;
        uint64 grace;
        uint8 periodMonths;
        bool onSale;
        /// @dev liveness window, seconds (0: a report pays at once).
        uint64 liveness;
    }

    struct Policy {
        address insured;
        Status status;
        uint64 productId;
        bytes32 region;
        /// @dev paid + owed so far (what the limit has been used for).
        uint128 paid;
        /// @dev part of `paid` whose transfer failed and awaits `claimOwed`.
        uint128 owed;
    }

    /// @dev One slot per (region, month): the highest revision heard (revision + 1; 0 = none), its value
    ///      and observedAt, and the paging cursor into the region's policy list for that revision.
    ///      arrivedAt is when the report reached the pool (its liveness windows start then); released
    ///      is set when the region's windows and any dispute are over, and restarts the cursor once so
    ///      the policies skipped while it was pending are paid.
    struct Observation {
        int64 value;
        uint64 observedAt;
        uint32 revision1;
        uint32 cursor;
        uint40 arrivedAt;
        bool released;
    }

    enum DisputeStatus {
        None,
        Open,
        Upheld,
        Rejected
    }

    struct Dispute {
        address watcher;
        uint40 filedAt;
        DisputeStatus status;
        uint128 bond;
    }

    /// @notice `oracle.reports.MAX_REVISIONS`: epoch = month index × 1000 + revision.
    uint64 public constant MAX_REVISIONS = 1000;
    /// @notice Longest coverage a product may have, so closing a policy settles a bounded number of months.
    uint256 public constant MAX_COVERAGE_MONTHS = 60;
    /// @notice Grace of the products `createPolicy` registers: late reports for the last month still count.
    uint64 public constant DEFAULT_GRACE = 60 days;
    /// @notice Longest grace a product may have.
    uint64 public constant MAX_GRACE = 365 days;
    /// @notice `onReport` stops paying when less than this much gas is left, and keeps its cursor.
    uint256 public constant PUSH_GAS_RESERVE = 120_000;
    uint256 private constant BPS = 10_000;
    /// @notice Longest liveness window and dispute answer window.
    uint64 public constant MAX_WINDOW = 30 days;
    /// @notice How many policies a rejecting `resolveDispute` settles (bounded gas; `settle` goes on).
    uint256 public constant RESOLVE_PAGE = 20;

    IOracleRouter public immutable router;
    IERC20 public immutable token;

    uint256 public productCount;
    uint256 public policyCount;
    /// @notice Σ over open policies of (limit − paid): capital held for claims not yet paid.
    uint256 public totalExposure;
    /// @notice Payouts recorded whose transfer failed, awaiting `claimOwed`.
    uint256 public totalOwed;

    mapping(uint256 => Product) private _products;
    mapping(uint256 => Policy) private _policies;
    /// @dev region => every policy ever written on it (append-only, so paging cursors stay valid).
    mapping(bytes32 => uint256[]) private _regionPolicies;
    /// @dev region => month index => observation.
    mapping(bytes32 => mapping(uint256 => Observation)) private _obs;
    /// @dev policyId => period => entitlement already settled for that period.
    mapping(uint256 => mapping(uint256 => uint256)) private _periodPaid;
    mapping(bytes32 => bool) public subscribedRegion;

    /// @notice Holds the open disputes' bonds (its balance is their sum).
    DisputeBondVault public immutable bonds;
    /// @notice Bond a new dispute takes (0: disputes are off); reward an upheld one earns from capital.
    uint128 public disputeBond;
    uint128 public disputeReward;
    /// @notice Seconds the network has to post a replacement before a dispute can be rejected.
    uint64 public disputeAnswerWindow;
    /// @notice Σ bonds of open disputes (== the vault's balance).
    uint256 public openBonds;
    /// @notice Longest liveness window of the region's products: how long its reports can be disputed.
    mapping(bytes32 => uint64) public regionLiveness;
    /// @dev region => epoch => dispute.
    mapping(bytes32 => mapping(uint64 => Dispute)) private _disputes;

    event ProductRegistered(
        uint256 indexed productId,
        bytes32 indexed termsHash,
        bytes32 indexed region,
        int64 trigger,
        int64 exit,
        uint128 limit,
        uint128 deductible,
        uint64 coverageStart,
        uint64 coverageEnd,
        uint64 grace,
        uint8 periodMonths,
        uint128 premium
    );
    event ProductSale(uint256 indexed productId, bool onSale);
    event PolicyCreated(
        uint256 indexed policyId,
        address indexed insured,
        bytes32 indexed region,
        uint64 coverageStart,
        uint64 coverageEnd,
        int64 trigger,
        int64 exit,
        uint128 limit
    );
    /// @notice The product a policy was written under, and the premium paid (0 when the insurer wrote it).
    event PolicyTerms(uint256 indexed policyId, uint256 indexed productId, bytes32 indexed termsHash, uint256 premium);
    /// @notice A (region, month) value the pool will settle on; revision from the report's epoch.
    event RegionValue(bytes32 indexed region, uint256 indexed month, uint256 revision, int256 value, uint64 observedAt);
    /// @dev `epoch` is the report that paid; 0 when the payout was a late `claimOwed`.
    event PayoutSent(uint256 indexed policyId, address indexed insured, uint256 amount, uint64 epoch);
    event PayoutFailed(uint256 indexed policyId, address indexed insured, uint256 amount, uint64 epoch);
    event PolicyClosed(uint256 indexed policyId);
    event LivenessSet(uint256 indexed productId, bytes32 indexed region, uint64 window);
    event DisputeTermsSet(uint128 bond, uint128 reward, uint64 answerWindow);
    event DisputeFiled(
        bytes32 indexed subject, uint64 indexed epoch, address indexed watcher, uint256 bond, string evidenceCid
    );
    event DisputeUpheld(bytes32 indexed subject, uint64 indexed epoch, address indexed watcher, uint256 bond, uint256 reward);
    event DisputeRejected(bytes32 indexed subject, uint64 indexed epoch, address indexed watcher, uint256 bond);

    error NotRouter(address caller);
    error BadTerms(string why);
    error UnknownProduct(uint256 productId);
    error NotOnSale(uint256 productId);
    error InsufficientCapital(uint256 balance, uint256 required);
    error NotOwed(uint256 policyId);
    error NotClosable(uint256 policyId, uint256 closableAfter);
    error UnknownPolicy(uint256 policyId);
    error WouldUnderfundOwed(uint256 balance, uint256 owed, uint256 amount);
    error DisputesOff();
    error NotDisputable(bytes32 subject, uint64 epoch, string why);
    error NoOpenDispute(bytes32 subject, uint64 epoch);
    error DisputeUnanswered(bytes32 subject, uint64 epoch, uint256 rejectableAt);
    error Pending(uint256 policyId, uint256 month);

    constructor(IOracleRouter router_, IERC20 token_) {
        router = router_;
        token = token_;
        bonds = new DisputeBondVault(token_);
    }

    // ------------------------------------------------------------------ rules

    /// @notice The payout rule: floor(limit * (value - trigger) / (exit - trigger)) clamped to [0, limit].
    /// @dev Pure, so anyone (and the tests) can check it. The products fit in 256 bits because
    ///      limit < 2^128 and (value - trigger) < 2^64 on the only branch that multiplies.
    function payoutFor(int256 value, int64 trigger, int64 exit, uint128 limit) public pure returns (uint256) {
        if (exit <= trigger) revert BadTerms("exit must exceed trigger");
        if (value <= trigger) return 0;
        if (value >= exit) return limit;
        uint256 span = uint256(int256(exit) - int256(trigger));
        uint256 over = uint256(value - int256(trigger));
        return (uint256(limit) * over) / span;
    }

    /// @notice Capital the pool must hold: unpaid limits of open policies plus owed payouts.
    function reserved() public view returns (uint256) {
        return totalExposure + totalOwed;
    }

    /// @notice Capital above `reserved()`: what a new policy's limit may use and `withdraw` may take.
    function freeCapital() public view returns (uint256) {
        uint256 balance = token.balanceOf(address(this));
        uint256 r = reserved();
        return balance > r ? balance - r : 0;
    }

    /// @notice Premium of a product: `premium` if non-zero, else limit × rateBps × (1 + loadingBps) / 10⁸.
    function quotePremium(uint128 limit, uint128 premium, uint32 rateBps, uint32 loadingBps)
        public
        pure
        returns (uint128)
    {
        if (premium != 0) return premium;
        return uint128((uint256(limit) * rateBps * (BPS + loadingBps)) / (BPS * BPS));
    }

    // ------------------------------------------------------------------ products and policies

    /// @notice A product's terms as the insurer registers them (values in the report's fixed point, 10**6).
    /// @param termsHash keccak256 of the product's canonical terms JSON.
    /// @param periodMonths months per period (1 monthly, 3 seasonal ... 12).
    /// @param premium flat premium in token units; 0 to price it as limit × rateBps × (1 + loadingBps).
    struct ProductTerms {
        bytes32 termsHash;
        bytes32 region;
        int64 trigger;
        int64 exit;
        uint128 limit;
        uint128 deductible;
        uint64 coverageStart;
        uint64 coverageEnd;
        uint64 grace;
        uint8 periodMonths;
        uint128 premium;
        uint32 rateBps;
        uint32 loadingBps;
    }

    /// @notice Register a product (insurer only); it is on sale at once. Returns its id.
    function registerProduct(ProductTerms calldata t) external onlyOwner returns (uint256 productId) {
        if (t.termsHash == bytes32(0)) revert BadTerms("terms hash is zero");
        if (t.rateBps > BPS || t.loadingBps > 10 * BPS) revert BadTerms("rate above 100% or loading above 1000%");
        productId = _register(
            Product({
                termsHash: t.termsHash,
                region: t.region,
                trigger: t.trigger,
                exit: t.exit,
                coverageStart: t.coverageStart,
                coverageEnd: t.coverageEnd,
                limit: t.limit,
                deductible: t.deductible,
                premium: quotePremium(t.limit, t.premium, t.rateBps, t.loadingBps),
                grace: t.grace,
                periodMonths: t.periodMonths,
                onSale: true,
                liveness: 0
            })
        );
    }

    /// @notice Stop or resume selling a product (insurer only); policies already sold are unaffected.
    function setOnSale(uint256 productId, bool onSale) external onlyOwner {
        Product storage p = _product(productId);
        p.onSale = onSale;
        emit ProductSale(productId, onSale);
    }

    /// @notice Buy a policy of `productId` for `insured`, paying the product's premium from the caller
    ///         (approve the pool first). Refused (InsufficientCapital) when the pool's free capital,
    ///         premium included, cannot reserve the policy's limit.
    function buyPolicy(uint256 productId, address insured) external returns (uint256 policyId) {
        Product storage p = _product(productId);
        if (!p.onSale) revert NotOnSale(productId);
        if (block.timestamp >= p.coverageEnd) revert BadTerms("coverage has ended");
        uint256 premium = p.premium;
        if (premium != 0) token.safeTransferFrom(msg.sender, address(this), premium);
        policyId = _write(productId, insured, premium);
    }

    /// @notice Write a policy without premium (insurer only): registers a monthly product with these terms,
    ///         no deductible and DEFAULT_GRACE, and writes one policy under it. Capital rule applies.
    /// @param coverageStart coverageEnd unix seconds; reports with observedAt in (start, end] count.
    function createPolicy(
        address insured,
        bytes32 regionSubject,
        uint64 coverageStart,
        uint64 coverageEnd,
        int64 trigger,
        int64 exit,
        uint128 limit
    ) external onlyOwner returns (uint256 policyId) {
        uint256 productId = _register(
            Product({
                termsHash: bytes32(0),
                region: regionSubject,
                trigger: trigger,
                exit: exit,
                coverageStart: coverageStart,
                coverageEnd: coverageEnd,
                limit: limit,
                deductible: 0,
                premium: 0,
                grace: DEFAULT_GRACE,
                periodMonths: 1,
                onSale: false,
                liveness: 0
            })
        );
        policyId = _write(productId, insured, 0);
    }

    function product(uint256 productId) external view returns (Product memory) {
        return _products[productId];
    }

    function policy(uint256 policyId) external view returns (Policy memory) {
        return _policies[policyId];
    }

    /// @notice Ids of every policy written on `region`, open or closed, in order (`start`, at most `count`).
    function regionPolicies(bytes32 region, uint256 start, uint256 count) external view returns (uint256[] memory ids) {
        uint256[] storage all = _regionPolicies[region];
        uint256 end = start + count > all.length ? all.length : start + count;
        ids = new uint256[](end > start ? end - start : 0);
        for (uint256 i = start; i < end; ++i) ids[i - start] = all[i];
    }

    function regionPolicyCount(bytes32 region) external view returns (uint256) {
        return _regionPolicies[region].length;
    }

    /// @notice The value the pool holds for (region, month): revision (−1 as max uint when none), value,
    ///         observedAt, and how many of the region's policies the paging has settled for it.
    function observation(bytes32 region, uint256 month)
        external
        view
        returns (bool known, uint256 revision, int256 value, uint64 observedAt, uint256 settledUpTo)
    {
        Observation memory o = _obs[region][month];
        known = o.revision1 != 0;
        revision = known ? o.revision1 - 1 : 0;
        return (known, revision, o.value, o.observedAt, o.cursor);
    }

    /// @notice What settling `policyId` for `month` would pay now (0 if nothing is due).
    function due(uint256 policyId, uint256 month) external view returns (uint256 amount) {
        (amount, ) = _due(policyId, month);
    }

    /// @notice Entitlement already settled for `policyId` in `period` (month index / periodMonths).
    function periodPaid(uint256 policyId, uint256 period) external view returns (uint256) {
        return _periodPaid[policyId][period];
    }

    // ------------------------------------------------------------------ liveness and disputes

    /// @notice Set a product's liveness window (insurer only; at most MAX_WINDOW). Set it before selling:
    ///         the region's dispute window (`regionLiveness`) only ever grows.
    function setLiveness(uint256 productId, uint64 window) external onlyOwner {
        Product storage p = _product(productId);
        if (window > MAX_WINDOW) revert BadTerms("liveness too long");
        p.liveness = window;
        if (window > regionLiveness[p.region]) regionLiveness[p.region] = window;
        emit LivenessSet(productId, p.region, window);
    }

    /// @notice Bond of a new dispute, reward of an upheld one, and the answer window (insurer only).
    ///         Open disputes keep the bond they were filed with. bond = 0 turns disputes off.
    function setDisputeTerms(uint128 bond, uint128 reward, uint64 answerWindow) external onlyOwner {
        if (answerWindow == 0 || answerWindow > MAX_WINDOW) revert BadTerms("answer window out of range");
        disputeBond = bond;
        disputeReward = reward;
        disputeAnswerWindow = answerWindow;
        emit DisputeTermsSet(bond, reward, answerWindow);
    }

    /// @notice Dispute the report (subject, epoch) while it is pending: it must be the revision the pool
    ///         holds for its month, within the region's liveness window. Takes `disputeBond` from the
    ///         caller (approve the pool first) into the vault. `evidenceCid` names the watcher's evidence.
    function dispute(bytes32 subject, uint64 epoch, string calldata evidenceCid) external {
        uint256 bond = disputeBond;
        if (bond == 0) revert DisputesOff();
        Observation storage o = _obs[subject][epoch / MAX_REVISIONS];
        if (o.revision1 != epoch % MAX_REVISIONS + 1) revert NotDisputable(subject, epoch, "not the held revision");
        if (block.timestamp >= uint256(o.arrivedAt) + regionLiveness[subject]) {
            revert NotDisputable(subject, epoch, "liveness window over");
        }
        Dispute storage d = _disputes[subject][epoch];
        if (d.status != DisputeStatus.None) revert NotDisputable(subject, epoch, "already disputed");
        _disputes[subject][epoch] = Dispute({
            watcher: msg.sender,
            filedAt: uint40(block.timestamp),
            status: DisputeStatus.Open,
            bond: uint128(bond)
        });
        openBonds += bond;
        token.safeTransferFrom(msg.sender, address(bonds), bond);
        emit DisputeFiled(subject, epoch, msg.sender, bond, evidenceCid);
    }

    /// @notice Settle an open dispute (anyone). Upheld when the pool holds a higher revision for the
    ///         report's month (the network replaced it): bond back to the watcher plus the reward (as
    ///         much of `disputeReward` as free capital allows). Otherwise rejected once
    ///         `disputeAnswerWindow` has passed since filing: the bond goes to the pool and the report,
    ///         no longer frozen, pays (the first RESOLVE_PAGE policies of its page; `settle` does the rest).
    function resolveDispute(bytes32 subject, uint64 epoch) external returns (bool upheld) {
        Dispute storage d = _disputes[subject][epoch];
        if (d.status != DisputeStatus.Open) revert NoOpenDispute(subject, epoch);
        uint256 month = epoch / MAX_REVISIONS;
        uint256 bond = d.bond;
        address watcher = d.watcher;
        if (_obs[subject][month].revision1 > epoch % MAX_REVISIONS + 1) {
            d.status = DisputeStatus.Upheld;
            openBonds -= bond;
            uint256 reward = disputeReward;
            uint256 free = freeCapital();
            if (reward > free) reward = free;
            bonds.pay(watcher, bond);
            if (reward != 0) token.safeTransfer(watcher, reward);
            emit DisputeUpheld(subject, epoch, watcher, bond, reward);
            return true;
        }
        uint256 rejectableAt = uint256(d.filedAt) + disputeAnswerWindow;
        if (block.timestamp < rejectableAt) revert DisputeUnanswered(subject, epoch, rejectableAt);
        d.status = DisputeStatus.Rejected;
        openBonds -= bond;
        bonds.pay(address(this), bond);
        emit DisputeRejected(subject, epoch, watcher, bond);
        _page(subject, month, RESOLVE_PAGE, 0);
        return false;
    }

    /// @notice The dispute of report (subject, epoch), if any.
    function disputeOf(bytes32 subject, uint64 epoch) external view returns (Dispute memory) {
        return _disputes[subject][epoch];
    }

    /// @notice Whether the report the pool holds for (region, month) is under an open dispute.
    function frozen(bytes32 region, uint256 month) public view returns (bool) {
        Observation memory o = _obs[region][month];
        if (o.revision1 == 0) return false;
        return _disputes[region][uint64(month * MAX_REVISIONS + o.revision1 - 1)].status == DisputeStatus.Open;
    }

    // ------------------------------------------------------------------ reports and settlement

    /// @inheritdoc IReportSubscriber
    /// @dev Records the (region, month) value in O(1), then pays the region's policies while gas lasts;
    ///      whatever is left is paid by `settle` or `claim`, so no policy is lost to the gas stipend.
    function onReport(Report calldata report) external override {
        if (msg.sender != address(router)) revert NotRouter(msg.sender);
        if (report.kind != ReportKinds.DROUGHT_SEVERITY) return;
        (bool fresh, uint256 month) = _record(report.subject, report.epoch, report.value, report.observedAt);
        if (fresh) _page(report.subject, month, type(uint256).max, PUSH_GAS_RESERVE);
    }

    /// @notice Record the router's latest report for `region` if the pool has not heard it (e.g. it was
    ///         sent while the pool was unsubscribed). Anyone may call. Returns whether it was new.
    function sync(bytes32 region) external returns (bool fresh) {
        (uint64 epoch, uint64 observedAt, int256 value, uint8 kind, ) = router.latest(region);
        if (kind != ReportKinds.DROUGHT_SEVERITY || epoch == 0) return false;
        (fresh, ) = _record(region, epoch, value, observedAt);
    }

    /// @notice Settle up to `count` more of `region`'s policies for `month` (anyone). Returns how many of
    ///         the region's policies remain to settle for the month's current revision.
    function settle(bytes32 region, uint256 month, uint256 count) external returns (uint256 remaining) {
        return _page(region, month, count, 0);
    }

    /// @notice Pay what `policyId` is due for `month` (anyone; the insured receives it). Returns the amount.
    function claim(uint256 policyId, uint256 month) external returns (uint256 amount) {
        if (_policies[policyId].status == Status.None) revert UnknownPolicy(policyId);
        return _settle(policyId, month);
    }

    /// @notice Pay a policy's owed payouts (anyone; the insured receives them). They are reserved, so the
    ///         pool always holds them.
    function claimOwed(uint256 policyId) external {
        Policy storage p = _policies[policyId];
        uint256 amount = p.owed;
        if (amount == 0) revert NotOwed(policyId);
        p.owed = 0;
        totalOwed -= amount;
        token.safeTransfer(p.insured, amount);
        emit PayoutSent(policyId, p.insured, amount, 0);
    }

    /// @notice Close a policy once its coverage and grace have passed (insurer only): every month of the
    ///         coverage is settled first, then the unused limit leaves the reserve.
    function closeExpired(uint256 policyId) external onlyOwner {
        Policy storage p = _policies[policyId];
        Product storage pr = _products[p.productId];
        uint256 closableAfter = uint256(pr.coverageEnd) + pr.grace;
        if (p.status != Status.Active || block.timestamp <= closableAfter) revert NotClosable(policyId, closableAfter);
        // A report's month ends at or before its observedAt, and observedAt lies in (start, end].
        uint256 first = monthIndex(pr.coverageStart);
        first = first == 0 ? 0 : first - 1;
        uint256 last = monthIndex(pr.coverageEnd);
        for (uint256 m = first; m <= last; ++m) {
            if (_pending(p.region, m, pr.liveness)) revert Pending(policyId, m);
            _settle(policyId, m);
        }
        p.status = Status.Closed;
        totalExposure -= pr.limit - p.paid;
        emit PolicyClosed(policyId);
    }

    /// @notice Take capital out (insurer only), never below `reserved()`.
    function withdraw(address to, uint256 amount) external onlyOwner {
        uint256 balance = token.balanceOf(address(this));
        uint256 r = reserved();
        if (amount > balance || balance - amount < r) revert WouldUnderfundOwed(balance, r, amount);
        token.safeTransfer(to, amount);
    }

    /// @notice Subscribe the pool to `region` again if the router no longer lists it (anyone), for a region
    ///         it insures. Returns whether it subscribed.
    function resubscribe(bytes32 region) external returns (bool) {
        if (!subscribedRegion[region]) revert BadTerms("region not insured");
        return _ensureSubscribed(region);
    }

    /// @notice UTC month index (year × 12 + month − 1) of `timestamp`, as OracleRouter.monthIndex.
    function monthIndex(uint256 timestamp) public pure returns (uint256) {
        unchecked {
            uint256 z = timestamp / 1 days + 719_468;
            uint256 era = z / 146_097;
            uint256 doe = z - era * 146_097;
            uint256 yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            uint256 doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            uint256 mp = (5 * doy + 2) / 153;
            return (era * 400 + yoe) * 12 + mp + 2;
        }
    }

    // ------------------------------------------------------------------ internals

    function _product(uint256 productId) private view returns (Product storage p) {
        p = _products[productId];
        if (p.limit == 0) revert UnknownProduct(productId);
    }

    function _register(Product memory p) private returns (uint256 productId) {
        if (p.coverageEnd <= p.coverageStart) revert BadTerms("coverage end must follow start");
        if (monthIndex(p.coverageEnd) - monthIndex(p.coverageStart) >= MAX_COVERAGE_MONTHS) {
            revert BadTerms("coverage too long");
        }
        if (p.trigger < 0 || p.exit <= p.trigger) revert BadTerms("need 0 <= trigger < exit");
        if (p.limit == 0) revert BadTerms("limit is zero");
        if (p.deductible >= p.limit) revert BadTerms("deductible must be below limit");
        if (p.grace > MAX_GRACE) revert BadTerms("grace too long");
        if (p.periodMonths == 0 || p.periodMonths > 12) revert BadTerms("periodMonths must be 1..12");
        productId = ++productCount;
        _products[productId] = p;
        emit ProductRegistered(
            productId,
            p.termsHash,
            p.region,
            p.trigger,
            p.exit,
            p.limit,
            p.deductible,
            p.coverageStart,
            p.coverageEnd,
            p.grace,
            p.periodMonths,
            p.premium
        );
    }

    function _write(uint256 productId, address insured, uint256 premium) private returns (uint256 policyId) {
        if (insured == address(0)) revert BadTerms("insured is zero");
        Product storage pr = _products[productId];
        uint256 required = reserved() + pr.limit;
        uint256 balance = token.balanceOf(address(this));
        if (balance < required) revert InsufficientCapital(balance, required);
        totalExposure += pr.limit;
        bytes32 region = pr.region;
        policyId = ++policyCount;
        _policies[policyId] = Policy({
            insured: insured,
            status: Status.Active,
            productId: uint64(productId),
            region: region,
            paid: 0,
            owed: 0
        });
        _regionPolicies[region].push(policyId);
        subscribedRegion[region] = true;
        _ensureSubscribed(region);
        emit PolicyCreated(policyId, insured, region, pr.coverageStart, pr.coverageEnd, pr.trigger, pr.exit, pr.limit);
        emit PolicyTerms(policyId, productId, pr.termsHash, premium);
    }

    function _ensureSubscribed(bytes32 region) private returns (bool) {
        address[] memory subs = router.subscribers(region);
        for (uint256 i = 0; i < subs.length; ++i) {
            if (subs[i] == address(this)) return false;
        }
        router.subscribe(region);
        return true;
    }

    /// @dev Keep (region, month)'s value if its revision is higher than the one held; reset the cursor.
    function _record(bytes32 region, uint64 epoch, int256 value, uint64 observedAt)
        private
        returns (bool fresh, uint256 month)
    {
        month = epoch / MAX_REVISIONS;
        uint256 revision = epoch % MAX_REVISIONS;
        Observation storage o = _obs[region][month];
        if (o.revision1 > revision) return (false, month);
        // The router bounds drought values to 0 .. 5e6, so int64 holds them.
        _obs[region][month] = Observation({
            value: int64(value),
            observedAt: observedAt,
            revision1: uint32(revision + 1),
            cursor: 0,
            arrivedAt: uint40(block.timestamp),
            released: regionLiveness[region] == 0
        });
        emit RegionValue(region, month, revision, value, observedAt);
        return (true, month);
    }

    /// @dev Settle the region's policies for `month` from the cursor: at most `count`, and while more than
    ///      `gasReserve` gas is left (0 = no gas check). Returns how many remain.
    function _page(bytes32 region, uint256 month, uint256 count, uint256 gasReserve) private returns (uint256) {
        Observation storage o = _obs[region][month];
        if (o.revision1 == 0) return 0;
        if (!o.released && !_pending(region, month, regionLiveness[region])) {
            // Every window is over and no dispute is open: page again from the start, so the policies
            // skipped while the report was pending are paid (those already paid are due nothing).
            o.released = true;
            o.cursor = 0;
        }
        uint256[] storage ids = _regionPolicies[region];
        uint256 n = ids.length;
        uint256 i = o.cursor;
        uint256 done = 0;
        while (i < n && done < count) {
            if (gasReserve != 0 && gasleft() < gasReserve) break;
            _settle(ids[i], month);
            ++i;
            ++done;
        }
        o.cursor = uint32(i);
        return n - i;
    }

    function _due(uint256 policyId, uint256 month) private view returns (uint256 amount, uint256 period) {
        Policy storage p = _policies[policyId];
        if (p.status != Status.Active) return (0, 0);
        Observation memory o = _obs[p.region][month];
        if (o.revision1 == 0) return (0, 0);
        Product storage pr = _products[p.productId];
        if (o.observedAt <= pr.coverageStart || o.observedAt > pr.coverageEnd) return (0, 0);
        if (_pending(p.region, month, pr.liveness)) return (0, 0);
        uint256 gross = payoutFor(o.value, pr.trigger, pr.exit, pr.limit);
        if (gross <= pr.deductible) return (0, 0);
        uint256 entitled = gross - pr.deductible;
        period = month / pr.periodMonths;
        uint256 already = _periodPaid[policyId][period];
        if (entitled <= already) return (0, period);
        amount = entitled - already;
        uint256 left = pr.limit - p.paid;
        if (amount > left) amount = left;
    }

    /// @dev Pay what is due: the books first (never twice), then the transfer; a failed transfer is owed.
    function _settle(uint256 policyId, uint256 month) private returns (uint256 amount) {
        uint256 period;
        (amount, period) = _due(policyId, month);
        if (amount == 0) return 0;
        Policy storage p = _policies[policyId];
        _periodPaid[policyId][period] += amount;
        p.paid += uint128(amount);
        totalExposure -= amount;
        Observation memory o = _obs[p.region][month];
        uint64 epoch = uint64(month * MAX_REVISIONS + o.revision1 - 1);
        if (_tryTransfer(p.insured, amount)) {
            emit PayoutSent(policyId, p.insured, amount, epoch);
        } else {
            p.owed += uint128(amount);
            totalOwed += amount;
            emit PayoutFailed(policyId, p.insured, amount, epoch);
        }
    }

    /// @dev Whether the report held for (region, month) may not pay yet under a liveness `window`: it
    ///      arrived less than `window` seconds ago, or it is under an open dispute.
    function _pending(bytes32 region, uint256 month, uint64 window) private view returns (bool) {
        Observation storage o = _obs[region][month];
        if (o.revision1 == 0) return false;
        if (window != 0 && block.timestamp < uint256(o.arrivedAt) + window) return true;
        return _disputes[region][uint64(month * MAX_REVISIONS + o.revision1 - 1)].status == DisputeStatus.Open;
    }

    /// @dev A failing transfer must not revert the whole page for the other policies, so we call the token
    ///      directly and report success instead of reverting.
    function _tryTransfer(address to, uint256 amount) private returns (bool) {
        if (token.balanceOf(address(this)) < amount) return false;
        (bool ok, bytes memory ret) = address(token).call(abi.encodeCall(IERC20.transfer, (to, amount)));
        return ok && (ret.length == 0 || (ret.length == 32 && abi.decode(ret, (bool))));
    }
}
